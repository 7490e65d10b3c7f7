"""The local stack starts, is reused, reports, runs a flow, and stops exactly what it started.

Real processes on loopback: one Prefect server for the lifecycle test (it must be stopped
by the test) plus the session's shared one; the failure cases use small stand-in
components so they take well under a second each.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from storeops.errors import ConfigError
from storeops.stack import (
    STATUS_NOT_RUNNING,
    STATUS_OK,
    Component,
    Stack,
    StackError,
    cmd_down,
    cmd_status,
    cmd_up,
)

FLOW = """
import asyncio
from prefect import flow

@flow(name="stack-smoke")
async def smoke(x: int) -> int:
    return x * 2

print("result", asyncio.run(smoke(21)))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def gone(pid: int) -> bool:
    """No such process, or only a zombie left for its parent to collect."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def flow_runs(api_url: str, flow_name: str) -> list[dict[str, object]]:
    body = {"flows": {"name": {"any_": [flow_name]}}}
    for _ in range(20):  # SQLite-backed servers answer 503 when the database is busy
        response = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=10)
        if response.status_code != 503:
            break
        time.sleep(0.2)
    response.raise_for_status()
    runs: list[dict[str, object]] = response.json()
    return runs


class StandIn(Stack):
    """A stack whose components are given by the test instead of Prefect's server."""

    def __init__(self, home: Path, components: list[Component]) -> None:
        super().__init__(home, port=0, ui=False)
        self._given = components

    def components(self, port: int) -> list[Component]:
        return self._given


# ---------------------------------------------------------------- the real server


def test_lifecycle_up_reuse_status_flow_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    stack = Stack(home, port=0, ui=False)
    first = stack.up(timeout=120)
    try:
        assert first.started
        api = first.urls["prefect_api"]
        assert api.startswith("http://127.0.0.1:")
        assert httpx.get(f"{api}/health", timeout=5).status_code == 200
        recorded = json.loads((home / "stack.json").read_text())["processes"]
        assert ["prefect-server", "runner", "inbox"] == [p["name"] for p in recorded]
        inbox = first.urls["inbox"]
        assert httpx.get(f"{inbox}/health", timeout=5).json()["service"] == "storeops-inbox"
        server = recorded[0]
        assert first.processes[0].pid == server["pid"]
        assert "--host" in server["argv"]
        assert "127.0.0.1" == server["argv"][server["argv"].index("--host") + 1]
        assert (home / "prefect" / "prefect.db").exists()

        again = stack.up()
        assert not again.started
        assert first.processes == again.processes
        assert 0 == cmd_up(home)
        assert "already up" in capsys.readouterr().out

        assert STATUS_OK == cmd_status(home)
        out = capsys.readouterr().out
        assert "healthy" in out
        assert api in out

        script = tmp_path / "smoke.py"
        script.write_text(FLOW)
        env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "client")}
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
        )
        assert 0 == done.returncode, done.stderr[-3000:]
        assert "result 42" in done.stdout
        runs = flow_runs(api, "stack-smoke")
        assert ["COMPLETED"] == [r["state_type"] for r in runs]
    finally:
        stopped = stack.down()

    assert [("inbox", "stopped"), ("runner", "stopped"), ("prefect-server", "stopped")] == [
        (s.name, s.outcome) for s in stopped
    ]
    assert not (home / "inbox.json").exists()  # the inbox forgot its address on the way out
    pid, port = server["pid"], server["port"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert port_free(port)
    assert not (home / "stack.json").exists()
    assert [] == stack.down()
    assert 0 == cmd_down(home)
    assert "nothing to stop" in capsys.readouterr().out
    assert STATUS_NOT_RUNNING == cmd_status(home)


def test_session_server_is_shared_and_set_for_clients(prefect_api_url: str) -> None:
    assert prefect_api_url == os.environ["PREFECT_API_URL"]
    assert httpx.get(f"{prefect_api_url}/health", timeout=5).json() is True


# ---------------------------------------------------------------- stopping only what is ours


def write_record(home: Path, pid: int, token: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    process = {
        "name": "prefect-server",
        "pid": pid,
        "pgid": pid,
        "start_token": token,
        "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        "argv": ["prefect", "server", "start"],
        "port": None,
        "health_url": None,
        "urls": {},
        "log": str(home / "logs" / "prefect-server.log"),
        "started_at": "2026-11-09T01:00:00+00:00",
    }
    (home / "stack.json").write_text(json.dumps({"version": 1, "processes": [process]}))


def test_a_stale_record_whose_pid_is_not_ours_is_not_killed(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        write_record(tmp_path, bystander.pid, token="ticks:1")  # pid reused by another program
        stack = Stack(tmp_path)
        assert not stack.status().running
        stopped = stack.down()
        assert [("prefect-server", "not ours")] == [(s.name, s.outcome) for s in stopped]
        assert bystander.poll() is None
        assert not (tmp_path / "stack.json").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_a_record_of_a_dead_process_is_cleared(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    write_record(tmp_path, dead.pid, token="ticks:1")
    assert [("prefect-server", "already gone")] == [
        (s.name, s.outcome) for s in Stack(tmp_path).down()
    ]
    assert not (tmp_path / "stack.json").exists()


STUBBORN = """
import http.server, pathlib, signal, subprocess, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the grandchild too
child = subprocess.Popen(["sleep", "60"])
pathlib.Path(sys.argv[2]).write_text(str(child.pid))
handler = http.server.SimpleHTTPRequestHandler
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"""


def test_down_escalates_to_sigkill_and_stops_the_whole_group(tmp_path: Path) -> None:
    port, pid_file = free_port(), tmp_path / "grandchild.pid"
    stubborn = Component(
        name="stubborn",
        argv=(sys.executable, "-c", STUBBORN, str(port), str(pid_file)),
        health_url=f"http://127.0.0.1:{port}/",
        port=port,
    )
    stack = StandIn(tmp_path / "home", [stubborn])
    result = stack.up(timeout=20)
    leader, grandchild = result.processes[0].pid, int(pid_file.read_text())
    assert not gone(grandchild)

    stopped = stack.down(grace=0.5)

    assert [("stubborn", "killed")] == [(s.name, s.outcome) for s in stopped]
    assert gone(leader)
    assert gone(grandchild)


# ---------------------------------------------------------------- failures people can act on


def test_a_busy_explicit_port_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is in use"):
            Stack(tmp_path, port=port).up()
        assert 1 == cmd_up(tmp_path, port=port)
    err = capsys.readouterr().err
    assert err.startswith(f"error: port {port} on 127.0.0.1 is in use")
    assert "Traceback" not in err
    assert not (tmp_path / "stack.json").exists()


def test_a_component_that_exits_names_its_log_and_shows_its_last_lines(tmp_path: Path) -> None:
    broken = Component(
        name="broken",
        argv=(sys.executable, "-c", "import sys; print('no database here'); sys.exit(3)"),
        health_url=f"http://127.0.0.1:{free_port()}/",
    )
    with pytest.raises(StackError) as caught:
        StandIn(tmp_path, [broken]).up(timeout=20)
    message = str(caught.value)
    assert f"broken exited while starting; see {tmp_path / 'logs' / 'broken.log'}" in message
    assert "no database here" in message
    assert not (tmp_path / "stack.json").exists()


SILENT = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"


def test_a_health_timeout_stops_what_was_started(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/health"  # nobody answers here
    pid_file = tmp_path / "silent.pid"
    silent = Component(
        name="silent", argv=(sys.executable, "-c", SILENT, str(pid_file)), health_url=url
    )
    with pytest.raises(StackError, match=f"silent did not answer {url} within 1 s; see "):
        StandIn(tmp_path / "home", [silent]).up(timeout=1)
    assert not (tmp_path / "home" / "stack.json").exists()
    assert gone(int(pid_file.read_text()))


def web(port: int, folder: Path, health: str = "") -> Component:
    """A stand-in component: Python's http.server on loopback, healthy while `health` exists."""
    argv = (sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory")
    return Component(
        name="web",
        argv=(*argv, str(folder), str(port)),
        health_url=f"http://127.0.0.1:{port}/{health}",
        port=port,
    )


def test_sigterm_is_enough_for_a_well_behaved_component(tmp_path: Path) -> None:
    stack = StandIn(tmp_path, [web(free_port(), tmp_path)])
    pid = stack.up(timeout=20).processes[0].pid
    assert stack.status().healthy
    assert [("web", "stopped")] == [(s.name, s.outcome) for s in stack.down()]
    assert gone(pid)


def test_up_restarts_a_stack_whose_process_died(tmp_path: Path) -> None:
    stack = StandIn(tmp_path / "home", [web(free_port(), tmp_path)])
    first = stack.up(timeout=20).processes[0].pid
    os.kill(first, 9)
    deadline = time.monotonic() + 5
    while stack.status().running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not stack.status().running
    again = stack.up(timeout=20)
    try:
        assert again.started
        assert first != again.processes[0].pid
    finally:
        stack.down()


def test_up_leaves_a_running_but_unhealthy_stack_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ok").write_text("ok")
    home = tmp_path / "home"
    stack = StandIn(home, [web(free_port(), tmp_path, health="ok")])
    pid = stack.up(timeout=20).processes[0].pid
    try:
        (tmp_path / "ok").unlink()  # health now answers 404
        with pytest.raises(StackError, match="it was left running: `storeops down` stops it"):
            stack.up(timeout=0.5)
        assert not gone(pid)
        assert 1 == cmd_status(home)
        assert "NOT HEALTHY" in capsys.readouterr().out
    finally:
        stack.down()
    assert gone(pid)


# ---------------------------------------------------------------- the database template


def make_migrated_db(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('head')")
        conn.commit()


def test_the_first_home_saves_a_template_and_later_homes_copy_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = Stack(tmp_path / "a", cache_dir=cache)
    assert "fresh" == first._prepare_prefect_db()
    make_migrated_db(first.prefect_db)  # what the server's first start leaves
    first._save_template()
    assert [first.template_db.name] == [p.name for p in cache.iterdir()]  # one file

    second = Stack(tmp_path / "b", cache_dir=cache)
    assert "copied" == second._prepare_prefect_db()
    with contextlib.closing(sqlite3.connect(second.prefect_db)) as conn:
        assert [("head",)] == conn.execute("SELECT * FROM alembic_version").fetchall()
    assert "existing" == second._prepare_prefect_db()


def test_a_damaged_template_is_dropped_and_rebuilt(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "home", cache_dir=tmp_path / "cache")
    stack.template_db.parent.mkdir(parents=True)
    stack.template_db.write_text("not a database")
    assert "fresh" == stack._prepare_prefect_db()
    assert not stack.template_db.exists()
