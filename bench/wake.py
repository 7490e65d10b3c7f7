"""Wake latency: how fast a waiting SOP run continues once a person completes a step.

Starts its own Prefect server (SQLite, a temporary PREFECT_HOME, a free 127.0.0.1 port),
one `serve()` process with fast polling, an in-process pausing flow and our own runner
process, then measures in interleaved rounds (A, B, C, D, A, B, …):

  runner-wake   HTTP POST to our long-running runner → the async `@flow` it calls
                in-process (an ad-hoc flow run) starts its body
  serve-wake    `POST /deployments/{id}/create_flow_run` → body starts under `flow.serve()`
                with PREFECT_RUNNER_POLL_FREQUENCY=1
  suspend       `POST /flow_runs/{id}/resume` of a suspended deployment run → its body runs
                again (from the top, in a new process)
  pause         resume of an in-process `pause_flow_run(poll_interval=1)` → the flow
                continues (the process is held the whole time; its RSS is reported)

    python bench/wake.py               # 15 rounds, about 2–3 minutes
    python bench/wake.py --rounds 5    # quicker
    python bench/wake.py --markdown    # table for BENCHMARKS.md / docs/wake-mechanisms.md

The target (issue 3 §2) is a median ≤ 1 s from the completion command to the next
automated step starting; the ledger append before the wake is not included here. Every
process started here is stopped on exit, on error, on Ctrl-C and on SIGTERM, and the
whole run is bounded by a hard time limit. Reports, does not gate (exit 0) unless
`--check` is given. See docs/wake-mechanisms.md for the full comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as `python bench/wake.py`: import `bench.*` from the working tree, and keep bench/
# itself off the path so its module names cannot shadow a library's.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402  (a Prefect dependency)

from bench.common import Row, Section, Target, median, percentile  # noqa: E402

ROUNDS = 15
BUDGET = 135.0  # seconds of measuring rounds; stops early (after MIN_ROUNDS) past it
MIN_ROUNDS = 5
HARD_LIMIT = 240  # seconds for the whole run, startup and cleanup included
WAIT = 30.0  # longest wait for any one observation
TARGET = 1.0  # seconds, median wake → next step starting
DEPLOYMENT = "bench"
PREFECT = [sys.executable, "-m", "prefect"]  # the CLI of the running interpreter

# ---------------------------------------------------------------- child programs

FLOWS = """
import json, os, time

from prefect import flow
from prefect.context import get_run_context
from prefect.flow_runs import pause_flow_run, suspend_flow_run


def mark(kind, **fields):
    record = {"t": time.time(), "kind": kind, "pid": os.getpid(), **fields}
    with open(os.environ["WAKE_MARKS"], "a") as out:
        out.write(json.dumps(record) + "\\n")


def run_id():
    return str(get_run_context().flow_run.id)


@flow(name="wake-plain")
async def wake_plain(tag: str = "") -> str:
    mark("start", run=run_id(), tag=tag)
    return tag


@flow(name="wake-suspend")
async def wake_suspend(tag: str = "", waits: int = 1) -> str:
    # Every resume runs this body again from the top in a new process: suspends whose
    # key already fired return at once, the first unfired one suspends (and exits) again.
    mark("start", run=run_id(), tag=tag)
    for i in range(waits):
        await suspend_flow_run(key=f"wait-{i}")  # no timeout: a timeout fails the run
        mark("after", run=run_id(), tag=tag, i=i)
    return tag


@flow(name="wake-pause")
async def wake_pause(tag: str = "", waits: int = 1) -> str:
    for i in range(waits):
        mark("paused", run=run_id(), tag=tag, i=i)
        await pause_flow_run(key=f"wait-{i}", timeout=900, poll_interval=1)
        mark("after", run=run_id(), tag=tag, i=i)
    return tag
"""

SERVE = """
from prefect import serve
from wake_flows import wake_plain, wake_suspend

serve(
    wake_plain.to_deployment(name="bench"),
    wake_suspend.to_deployment(name="bench"),
    limit=20,
    print_starting_message=False,
)
"""

PAUSE = """
import asyncio, sys
from wake_flows import wake_pause

asyncio.run(wake_pause(tag=sys.argv[1], waits=int(sys.argv[2])))
"""

# Our runner: one warm process, a loopback HTTP endpoint, flows called in-process.
RUNNER = """
import asyncio, json, sys, time

from prefect import tags
from wake_flows import mark, wake_plain

running = set()


async def continue_run(request):
    began = time.time()
    name = request.get("name") or None
    with tags(*request.get("tags", [])):
        await wake_plain.with_options(flow_run_name=name)(tag=request["tag"])
    mark("done", tag=request["tag"], seconds=time.time() - began)


async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\\r\\n\\r\\n")
        length = 0
        for line in head.split(b"\\r\\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = json.loads(await reader.readexactly(length))
        task = asyncio.create_task(continue_run(request))
        running.add(task)
        task.add_done_callback(running.discard)
        status = b"202 Accepted"
    except Exception:
        status = b"400 Bad Request"
    writer.write(b"HTTP/1.1 %s\\r\\ncontent-length: 0\\r\\n\\r\\n" % status)
    await writer.drain()
    writer.close()


async def main():
    await wake_plain(tag="warm-up")  # the first flow call in a process is slow
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    mark("ready", tag="runner")
    async with server:
        await server.serve_forever()


asyncio.run(main())
"""

# A completion command's wake: a fresh interpreter that imports our CLI (its real import
# weight; `import prefect` alone takes ~1.7 s, so the completion path must not) and posts
# the wake with the standard library. The ledger append before it is not included.
CLI = """
import http.client, json, sys

try:
    import storeops.cli  # noqa: F401
except Exception:
    pass
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
wake = {"tag": sys.argv[2], "name": "promotion-prep/cli", "tags": ["sop:promotion-prep"]}
body = json.dumps(wake)
connection.request("POST", "/wake", body, {"content-type": "application/json"})
sys.exit(0 if connection.getresponse().status == 202 else 1)
"""

# ---------------------------------------------------------------- processes


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, start time) for every process visible in /proc."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


class Processes:
    """Every process this benchmark starts, and all of their descendants, stopped on exit.

    Descendants are collected from /proc while running and before anything is signalled
    (Prefect's runner and workers start flow-run processes, some in new sessions, so a
    process group is not enough), and identified by (pid, start time) so a reused pid is
    never signalled. The processes that talk to the server stop first, then the server.
    """

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self._trees: dict[int, dict[int, str]] = {}  # root pid → {pid: start time}

    def start(
        self, args: list[str], *, env: dict[str, str], cwd: Path, log: Path
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                args,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(proc)
        found = _proc_table().get(proc.pid)
        self._trees[proc.pid] = {proc.pid: found[1]} if found else {}
        return proc

    def _collect(self) -> None:
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        for tree in self._trees.values():
            todo = list(tree)
            while todo:
                pid = todo.pop()
                if pid not in table or tree.get(pid, table[pid][1]) != table[pid][1]:
                    continue  # gone, or the pid now belongs to another process
                tree[pid] = table[pid][1]
                todo += [c for c in children.get(pid, []) if c not in tree]

    def _alive(self, roots: list[int]) -> list[int]:
        table = _proc_table()
        return [
            pid
            for root in roots
            for pid, start in self._trees[root].items()
            if table.get(pid, (0, ""))[1] == start
        ]

    def stop_all(self, grace: float = 8.0) -> None:
        # No signal may interrupt the cleanup itself; pending ones arrive afterwards.
        stops = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        try:
            roots = [proc.pid for proc in self.started]
            for wave in (roots[1:], roots[:1]):  # clients first, then the server
                self._signal(wave, signal.SIGTERM, grace)
            self._signal(roots, signal.SIGKILL, 3.0)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)

    def _signal(self, roots: list[int], sig: signal.Signals, wait: float) -> None:
        self._collect()
        for pid in self._alive(roots):
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for proc in self.started:
                proc.poll()  # reap our direct children
            self._collect()  # and catch anything started while stopping
            if not self._alive(roots):
                return
            time.sleep(0.1)

    def watch(self) -> None:
        """Record the current descendants (call now and then while running)."""
        self._collect()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


# ---------------------------------------------------------------- observations


class Marks:
    """Timestamps the child processes append (one JSON object per line) to one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[dict[str, Any]] = []
        self._offset = 0

    def _read(self) -> None:
        try:
            with self.path.open("rb") as src:
                src.seek(self._offset)
                data = src.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self._offset += end
        self.seen += [json.loads(line) for line in data[:end].splitlines() if line.strip()]

    async def wait(self, match: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self._read()
            for found in self.seen:
                if match(found):
                    return found
            if time.monotonic() > deadline:
                raise TimeoutError("no matching mark")
            await asyncio.sleep(0.005)


class Api:
    """The Prefect REST API with retries: a SQLite-backed server answers 503 when locked."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=30)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        for attempt in range(8):
            try:
                response = await self.http.request(method, path, json=body)
            except httpx.TransportError:
                if attempt == 7:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))
                continue
            if response.status_code < 500 or attempt == 7:
                response.raise_for_status()
                return response.json() if response.content else None
            await asyncio.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    async def state(self, run_id: str) -> tuple[str, str]:
        run = await self.call("GET", f"/flow_runs/{run_id}")
        return run["state"]["type"], run["state"]["name"]

    async def wait_state(self, run_id: str, wanted: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            kind, name = await self.state(run_id)
            if kind == wanted:
                return name
            if time.monotonic() > deadline:
                raise TimeoutError(f"{run_id} still {kind}/{name}, wanted {wanted}")
            await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


# ---------------------------------------------------------------- the benchmark


class Bench:
    def __init__(self, work: Path, procs: Processes) -> None:
        self.work = work
        self.procs = procs
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.marks = Marks(work / "marks.jsonl")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update(
            PREFECT_HOME=str(work / "prefect-home"),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_RUNNER_POLL_FREQUENCY="1",
            PYTHONPATH=os.pathsep.join([str(work), str(ROOT)]),
            WAKE_MARKS=str(self.marks.path),
        )
        self.api = Api(self.api_url)
        self.samples: dict[str, list[float]] = {
            "runner-wake": [],
            "cli-wake": [],
            "serve-wake": [],
            "suspend": [],
            "pause": [],
        }
        self.failures: dict[str, int] = dict.fromkeys(self.samples, 0)
        self.runner_call: list[float] = []
        self.suspend_outcomes: list[tuple[bool, bool]] = []  # (re-ran in a new process, held)
        self.broken: set[str] = set()
        self.pause_rss: list[float] = []
        self.process_rss: dict[str, float] = {}
        self.startup: dict[str, float] = {}
        self.locked = 0

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        return self.procs.start(args, env=self.env, cwd=self.work, log=self.work / f"{name}.log")

    def log_tail(self, name: str) -> str:
        text = (self.work / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-15:])

    async def setup(self) -> None:
        for name, text in (
            ("wake_flows.py", FLOWS),
            ("wake_serve.py", SERVE),
            ("wake_runner.py", RUNNER),
            ("wake_pause.py", PAUSE),
            ("wake_cli.py", CLI),
        ):
            (self.work / name).write_text(text)
        began = time.monotonic()
        server = self.start(
            "server",
            [
                *PREFECT,
                "server",
                "start",
                "--no-ui",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
        )
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"Prefect server exited:\n{self.log_tail('server')}")
            try:
                if (await self.api.http.get("/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - began > 90:
                raise TimeoutError(f"Prefect server not healthy:\n{self.log_tail('server')}")
            await asyncio.sleep(0.25)
        self.startup["Prefect server healthy"] = time.monotonic() - began

        began = time.monotonic()
        self.serve = self.start("serve", [sys.executable, "wake_serve.py"])
        self.runner_port = free_port()
        self.runner = self.start(
            "runner", [sys.executable, "wake_runner.py", str(self.runner_port)]
        )
        self.deployments: dict[str, str] = {}
        for flow in ("wake-plain", "wake-suspend"):
            while flow not in self.deployments:
                if self.serve.poll() is not None:
                    raise RuntimeError(f"serve exited:\n{self.log_tail('serve')}")
                try:
                    found = await self.api.call("GET", f"/deployments/name/{flow}/{DEPLOYMENT}")
                    self.deployments[flow] = found["id"]
                except httpx.HTTPStatusError:
                    await asyncio.sleep(0.2)
                if time.monotonic() - began > 60:
                    raise TimeoutError(f"serve did not register:\n{self.log_tail('serve')}")
        try:
            await self.marks.wait(lambda m: m["kind"] == "ready", timeout=60)
        except TimeoutError:
            raise RuntimeError(f"runner did not start:\n{self.log_tail('runner')}") from None
        self.startup["serve + runner ready"] = time.monotonic() - began

    # -- one observation per mechanism; each returns seconds

    async def runner_wake(self, tag: str) -> float:
        started = time.time()
        response = await self.api.http.post(
            f"http://127.0.0.1:{self.runner_port}/wake",
            json={"tag": tag, "name": f"promotion-prep/{tag[:6]}", "tags": ["sop:promotion-prep"]},
        )
        response.raise_for_status()
        body = await self.marks.wait(lambda m: m.get("tag") == tag and m["kind"] == "start")
        done = await self.marks.wait(lambda m: m.get("tag") == tag and m["kind"] == "done")
        self.runner_call.append(done["seconds"])
        return float(body["t"] - started)

    async def cli_wake(self, tag: str) -> float:
        started = time.time()
        cli = self.start("cli", [sys.executable, "wake_cli.py", str(self.runner_port), tag])
        body = await self.marks.wait(lambda m: m.get("tag") == tag and m["kind"] == "start")
        await self.marks.wait(lambda m: m.get("tag") == tag and m["kind"] == "done")
        deadline = time.monotonic() + 10
        while cli.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if cli.returncode != 0:
            raise RuntimeError(f"wake command failed: {cli.returncode}")
        return float(body["t"] - started)

    async def serve_wake(self, tag: str) -> float:
        started = time.time()
        await self.api.call(
            "POST",
            f"/deployments/{self.deployments['wake-plain']}/create_flow_run",
            {"parameters": {"tag": tag}},
        )
        body = await self.marks.wait(lambda m: m.get("tag") == tag and m["kind"] == "start")
        return float(body["t"] - started)

    async def suspend(self, i: int) -> float:
        """Resume wait i of one deployment run that suspends once per round."""
        tag = self.suspend_tag
        if i == 0:
            self.suspend_run = await self.api.call(
                "POST",
                f"/deployments/{self.deployments['wake-suspend']}/create_flow_run",
                {"parameters": {"tag": tag, "waits": self.rounds + 1}},
            )
            self.suspend_last = await self.marks.wait(
                lambda m: m.get("tag") == tag and m["kind"] == "start"
            )
        run_id = self.suspend_run["id"]
        before = self.suspend_last
        await self.api.wait_state(run_id, "PAUSED")
        deadline = time.monotonic() + 10
        while alive(before["pid"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        held = alive(before["pid"])
        await asyncio.sleep(random.uniform(0.0, 1.0))  # resume at a random poll phase
        started = time.time()
        result = await self.api.call("POST", f"/flow_runs/{run_id}/resume", {})
        if result["status"] != "ACCEPT":
            raise RuntimeError(f"resume answered {result['status']}")
        again = await self.marks.wait(
            lambda m: m.get("tag") == tag and m["kind"] == "start" and m["t"] > started
        )
        await self.marks.wait(
            lambda m: m.get("tag") == tag and m["kind"] == "after" and m["i"] == i
        )
        self.suspend_last = again
        self.suspend_outcomes.append((again["pid"] != before["pid"], held))
        return float(again["t"] - started)

    async def pause(self, i: int) -> float:
        tag = self.pause_tag
        paused = await self.marks.wait(
            lambda m: m.get("tag") == tag and m["kind"] == "paused" and m["i"] == i
        )
        await self.api.wait_state(paused["run"], "PAUSED")
        await asyncio.sleep(random.uniform(0.0, 1.0))  # resume at a random poll phase
        self.pause_rss.append(rss_mb(self.pauser.pid))
        started = time.time()
        result = await self.api.call("POST", f"/flow_runs/{paused['run']}/resume", {})
        if result["status"] != "ACCEPT":
            raise RuntimeError(f"resume answered {result['status']}")
        after = await self.marks.wait(
            lambda m: m.get("tag") == tag and m["kind"] == "after" and m["i"] == i
        )
        return float(after["t"] - started)

    async def measure(self, rounds: int, budget: float) -> None:
        self.rounds = rounds
        self.pause_tag = f"pause-{os.getpid()}"
        self.suspend_tag = f"suspend-{os.getpid()}"
        self.pauser = self.start(
            "pause", [sys.executable, "wake_pause.py", self.pause_tag, str(rounds + 1)]
        )
        cases: dict[str, Callable[[int, str], Any]] = {
            "runner-wake": lambda i, tag: self.runner_wake(tag),
            "cli-wake": lambda i, tag: self.cli_wake(tag),
            "serve-wake": lambda i, tag: self.serve_wake(tag),
            "suspend": lambda i, tag: self.suspend(i),
            "pause": lambda i, tag: self.pause(i),
        }
        began = time.monotonic()
        for i in range(rounds + 1):  # round 0 warms every path up and is not recorded
            for name, case in cases.items():
                if name in self.broken:
                    continue  # its waits are numbered: one lost resume loses the rest
                tag = f"{name}-{i}-{random.getrandbits(32):08x}"
                try:
                    seconds = await case(i, tag)
                except (TimeoutError, RuntimeError, httpx.HTTPError) as error:
                    self.failures[name] += 1
                    if name in ("pause", "suspend"):
                        self.broken.add(name)
                    print(f"  {name} round {i}: {type(error).__name__}: {error}", flush=True)
                    continue
                if i > 0:
                    self.samples[name].append(seconds)
                self.procs.watch()
                await asyncio.sleep(0.1)
            if i == 0:
                self.runner_call.clear()
                self.suspend_outcomes.clear()
            if i >= MIN_ROUNDS and time.monotonic() - began > budget:
                break
        for name, proc in (("serve", self.serve), ("runner", self.runner)):
            self.process_rss[name] = rss_mb(proc.pid)
        server_log = (self.work / "server.log").read_text(errors="replace")
        self.locked = server_log.count("database is locked")


def spread(values: list[float], unit: str = "s") -> str:
    return (
        f"n={len(values)}, p90 {percentile(values, 90):.2f} {unit}, "
        f"{min(values):.2f}–{max(values):.2f}"
    )


def report(bench: Bench, seconds: float) -> Section:
    section = Section("wake", "completion → next automated step starting (Prefect 3.8.8, SQLite)")
    titles = {
        "runner-wake": "our runner: HTTP wake → ad-hoc flow body",
        "cli-wake": "same, from a new CLI process (import storeops.cli)",
        "serve-wake": "new deployment run, serve() poll 1 s",
        "suspend": "resume of a suspended deployment run",
        "pause": "resume of pause_flow_run(poll_interval=1)",
    }
    for name, title in titles.items():
        values = bench.samples[name]
        if not values:
            section.notes.append(f"{title}: no successful samples")
            continue
        section.rows.append(Row(f"{name}: {title}", median(values), "s", spread(values)))
        section.targets.append(
            Target(f"{name} median", median(values), TARGET, "s", higher_is_better=False)
        )
    if bench.runner_call:
        calls = bench.runner_call
        section.rows.append(
            Row("ad-hoc async flow call in the warm runner", median(calls), "s", spread(calls))
        )
    base = bench.samples["runner-wake"]
    for name in ("cli-wake", "serve-wake", "suspend", "pause"):
        if base and bench.samples[name]:
            section.ratio(f"{name} / runner-wake", median(bench.samples[name]), median(base))
    outcomes = bench.suspend_outcomes
    if outcomes:
        section.notes.append(
            f"suspend: the body re-ran from the top in a new process after "
            f"{sum(r for r, _ in outcomes)} of {len(outcomes)} resumes; the flow-run process "
            f"was still alive while suspended in {sum(h for _, h in outcomes)} of {len(outcomes)}"
        )
    if bench.pause_rss:
        section.notes.append(
            f"pause: the paused flow's process is held while waiting, "
            f"RSS median {median(bench.pause_rss):.0f} MB (per waiting run)"
        )
    if bench.process_rss:
        shown = ", ".join(f"{k} {v:.0f} MB" for k, v in bench.process_rss.items())
        section.notes.append(f"RSS of the long-lived processes at the end: {shown}")
    section.notes.append(
        f"the server logged 'database is locked' {bench.locked} times; a 503 costs the "
        "Prefect client that gets it ≥ 2 s (its first retry waits 2**1 s): samples of "
        "2–2.5 s are that retry"
    )
    failed = {k: v for k, v in bench.failures.items() if v}
    if failed:
        section.notes.append(f"failed observations (not in the figures): {failed}")
    startup = ", ".join(f"{k} in {v:.1f} s" for k, v in bench.startup.items())
    section.notes.append(
        f"startup: {startup}; load average at the end {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs (absolute figures move with load; compare ratios)"
    )
    section.seconds = seconds
    return section


class _Stop(BaseException):
    """Raised from a signal handler so that every `finally` (and cleanup) runs."""


@contextmanager
def _bounded(limit: int) -> Iterator[None]:
    def stop(signum: int, _frame: object) -> None:
        raise _Stop(signal.Signals(signum).name)

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)
    previous = {s: signal.signal(s, stop) for s in stops}
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(rounds: int = ROUNDS, budget: float = BUDGET) -> Section:
    began = time.perf_counter()
    with (
        _bounded(HARD_LIMIT),
        tempfile.TemporaryDirectory(prefix="storeops-wake-") as tmp,
        Processes() as procs,
    ):
        bench = Bench(Path(tmp), procs)

        async def go() -> None:
            try:
                await bench.setup()
                await bench.measure(rounds, budget)
            finally:
                await bench.api.http.aclose()

        asyncio.run(go())
        return report(bench, time.perf_counter() - began)


def main(argv: list[str] | None = None) -> int:
    from bench.common import render_markdown, render_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="measured rounds (15)")
    parser.add_argument("--budget", type=float, default=BUDGET, help="seconds of rounds (135)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--check", action="store_true", help="exit 1 if runner-wake misses")
    args = parser.parse_args(argv)
    try:
        section = run(max(1, args.rounds), args.budget)
    except _Stop as stop:
        print(f"stopped by {stop}; every started process was stopped", file=sys.stderr)
        return 2
    print(render_markdown(section) if args.markdown else render_text(section))
    missed = [t for t in section.targets if t.what.startswith("runner-wake") and not t.passed]
    return 1 if args.check and (missed or not section.targets) else 0


if __name__ == "__main__":
    sys.exit(main())
