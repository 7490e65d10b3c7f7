"""The embedded local stack: start, inspect and stop the processes `storeops up` runs.

Edge module. Prefect runs as a subprocess and is probed over HTTP with the standard
library only: no prefect or httpx import here, so the CLI stays fast (the layering test
forbids both in storeops/). POSIX only: process groups and signals.

    STOREOPS_HOME/
    ├── stack.json        exactly what was started: pids, start tokens, argv, ports, URLs
    ├── stack.lock        serialises `up` and `down` on one home
    ├── logs/<name>.log   one log per component, appended to on every start
    └── prefect/          PREFECT_HOME, with the server's SQLite database prefect.db
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storeops.errors import ConfigError, StoreopsError

HOST = "127.0.0.1"  # never anything else: the Prefect API has no authentication
DEFAULT_PORT = 4200
STATE_VERSION = 1
PREFECT_SERVER = "prefect-server"

# Exit codes of cmd_status, after the LSB convention for `status`.
STATUS_OK, STATUS_UNHEALTHY, STATUS_NOT_RUNNING = 0, 1, 3

# Children started by this interpreter, kept referenced so that a running child is never
# garbage collected (Popen warns) and so that `down` in the same process can reap it.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


#: The inbox's usual port (notification links use whatever it really got: inbox.json).
INBOX_PORT = 8765


class StackError(StoreopsError):
    """A stack component failed to start, to become healthy, or to stop."""


@dataclass(frozen=True)
class Component:
    """One process of the stack: how to start it and how to tell that it is ready.

    `env` is laid over the caller's environment. `health_url` answers 200 once the
    component is ready (None: being alive is enough). `urls` are shown to people.
    Components start in list order and stop in reverse order.
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    health_url: str | None = None
    port: int | None = None
    urls: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Process:
    """A started component as recorded in stack.json.

    (boot_id, pid, start_token) identifies the process: a pid reused by another program
    after ours died has another start token, so `down` leaves it alone.
    """

    name: str
    pid: int
    pgid: int
    start_token: str
    boot_id: str
    argv: list[str]
    port: int | None
    health_url: str | None
    urls: dict[str, str]
    log: str
    started_at: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Process:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            pgid=int(data["pgid"]),
            start_token=str(data["start_token"]),
            boot_id=str(data["boot_id"]),
            argv=[str(a) for a in data["argv"]],
            port=None if data.get("port") is None else int(data["port"]),
            health_url=None if data.get("health_url") is None else str(data["health_url"]),
            urls={str(k): str(v) for k, v in dict(data.get("urls") or {}).items()},
            log=str(data["log"]),
            started_at=str(data["started_at"]),
        )


@dataclass(frozen=True)
class UpResult:
    started: bool  # False: the stack was already up and is reused
    processes: list[Process]
    seconds: float
    template: str  # how the Prefect database was prepared: "copied", "existing", "fresh"

    @property
    def urls(self) -> dict[str, str]:
        return {k: v for p in self.processes for k, v in p.urls.items()}


@dataclass(frozen=True)
class ProcessStatus:
    process: Process
    running: bool  # alive and still ours
    healthy: bool | None  # None: no health URL, or not running


@dataclass(frozen=True)
class StackStatus:
    home: Path
    processes: list[ProcessStatus]

    @property
    def running(self) -> bool:
        return bool(self.processes) and all(p.running for p in self.processes)

    @property
    def healthy(self) -> bool:
        return self.running and all(p.healthy is not False for p in self.processes)


@dataclass(frozen=True)
class Stopped:
    name: str
    pid: int
    outcome: str  # "stopped", "killed", "already gone", "not ours"
    seconds: float


class Stack:
    """The local stack under one home folder.

    `port`: None tries 4200 and falls back to any free loopback port; 0 always takes a
    free one; any other value is required (busy: ConfigError). `ui` serves the Prefect UI
    (tests turn it off: the first start in a home copies ~17 MB of UI files, ~1 s).
    `cache_dir` holds the pre-migrated Prefect database template, shared by all homes.
    """

    def __init__(
        self,
        home: Path,
        *,
        port: int | None = None,
        ui: bool = True,
        cache_dir: Path | None = None,
        python: str = sys.executable,
        runner: bool = True,
        storeops_env: Mapping[str, str] | None = None,
        database_url: str | None = None,
    ) -> None:
        self.home = Path(home).absolute()
        self.port = port
        self.ui = ui
        self.with_runner = runner
        self.storeops_env = dict(storeops_env or {})
        #: The Prefect server's database; None: SQLite under home (with the template copy).
        #: A `postgresql+asyncpg://…` URL is the scale-out path (NOTES.md: no 503s).
        self.database_url = database_url
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self.python = python

    # ------------------------------------------------------------ paths

    @property
    def state_path(self) -> Path:
        return self.home / "stack.json"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def prefect_db(self) -> Path:
        return self.prefect_home / "prefect.db"

    @property
    def template_db(self) -> Path:
        return self.cache_dir / f"prefect-template-{_prefect_version()}.db"

    # ------------------------------------------------------------ plan

    def components(self, port: int) -> list[Component]:
        """What `up` starts, in order. Later parts of the stack (a worker or runner, the
        inbox web server) are added here; each gets the server URL from `port`."""
        server = self.prefect_server(port)
        return [server, self.runner(port), self.inbox()] if self.with_runner else [server]

    def inbox(self) -> Component:
        """storeops.web: the inbox where people do their steps (8765, else any free port)."""
        inbox_port = INBOX_PORT if _port_free(INBOX_PORT) else _any_free_port()
        env = {"STOREOPS_HOME": str(self.home), "PYTHONUNBUFFERED": "1", **self.storeops_env}
        return Component(
            name="inbox",
            argv=(self.python, "-m", "storeops.web", "--port", str(inbox_port)),
            env=env,
            health_url=f"http://{HOST}:{inbox_port}/health",
            port=inbox_port,
            urls={"inbox": f"http://{HOST}:{inbox_port}"},
        )

    def runner(self, port: int) -> Component:
        """flows.runner: wakes runs (completions, due timers) as run-sop flow runs."""
        env = {
            "PREFECT_API_URL": f"http://{HOST}:{port}/api",
            "PREFECT_HOME": str(self.prefect_home / "client"),
            "STOREOPS_HOME": str(self.home),
            "PYTHONUNBUFFERED": "1",
            **self.storeops_env,
        }
        runner_port = _any_free_port()
        return Component(
            name="runner",
            argv=(self.python, "-m", "flows.runner", "--port", str(runner_port)),
            env=env,
            health_url=f"http://{HOST}:{runner_port}/health",
            port=runner_port,
        )

    def prefect_server(self, port: int) -> Component:
        base = f"http://{HOST}:{port}"
        env = {
            # Isolates profiles, memo store and local storage from ~/.prefect.
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_PROFILES_PATH": str(self.prefect_home / "profiles.toml"),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url
            or f"sqlite+aiosqlite:///{self.prefect_db}",
            # No calls home from a local tool, and no network wait at start.
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "true" if self.ui else "false",
            # Prefect's default copies the UI bundle into site-packages; keep it in home.
            "PREFECT_UI_STATIC_DIRECTORY": str(self.prefect_home / "ui"),
            # The server's own URL, not one inherited from the shell: the UI and any
            # in-server client use it.
            "PREFECT_API_URL": f"{base}/api",
            "PREFECT_UI_URL": base,
            "PYTHONUNBUFFERED": "1",
        }
        argv = (self.python, "-m", "prefect", "server", "start", "--host", HOST)
        return Component(
            name=PREFECT_SERVER,
            argv=(*argv, "--port", str(port)),
            env=env,
            health_url=f"{base}/api/health",
            port=port,
            urls={"prefect_api": f"{base}/api", **({"prefect_ui": base} if self.ui else {})},
        )

    # ------------------------------------------------------------ state

    def read_state(self) -> list[Process] | None:
        """The processes stack.json records, or None when there is no stack.json."""
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {STATE_VERSION}")
            return [Process.from_json(p) for p in data["processes"]]
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{self.state_path} is unreadable ({exc}); if no storeops processes are "
                "running, delete it"
            ) from exc

    def _write_state(self, processes: Sequence[Process]) -> None:
        data = {"version": STATE_VERSION, "processes": [asdict(p) for p in processes]}
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "stack.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------ operations

    def status(self) -> StackStatus:
        """What stack.json records, whether each process is alive and ours, and healthy."""
        found: list[ProcessStatus] = []
        for proc in self.read_state() or []:
            running = _is_ours(proc)
            healthy = _healthy(proc.health_url) if running and proc.health_url else None
            found.append(ProcessStatus(proc, running, healthy))
        return StackStatus(self.home, found)

    def up(self, timeout: float = 60.0) -> UpResult:
        """Start the stack, or reuse it if every recorded process is ours and healthy.

        Idempotent. On any failure, what this call started is stopped again and the
        error names the component and its log. stack.json is rewritten after each start,
        so an interrupted `up` still leaves `down` everything it needs.
        """
        t0 = time.monotonic()
        with self._locked():
            current = self.status()
            procs = [p.process for p in current.processes]
            if current.running:
                # All ours and alive: wait for health rather than kill a busy server.
                for proc in procs:
                    self._wait_ready(
                        proc,
                        timeout=timeout,
                        deadline=t0 + timeout,
                        hint="; it was left running: `storeops down` stops it",
                    )
                return UpResult(False, procs, time.monotonic() - t0, "existing")
            if procs:  # some died: stop what is left of ours and start again from clean
                self._stop_all(procs)
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            template = "external" if self.database_url else self._prepare_prefect_db()
            started: list[Process] = []
            try:
                self._start_all(started, timeout=timeout, deadline=t0 + timeout)
                if template == "fresh":
                    self._save_template()
            except BaseException:
                self._stop_all(started)
                self.state_path.unlink(missing_ok=True)
                if template not in ("existing", "external"):  # nothing of value yet
                    self._remove_prefect_db()
                raise
            return UpResult(True, started, time.monotonic() - t0, template)

    def down(self, grace: float = 10.0) -> list[Stopped]:
        """Stop exactly the processes stack.json records, then remove it. Idempotent.

        Each process group gets SIGTERM, then SIGKILL after `grace` seconds. A recorded
        pid that now belongs to another program is left alone.
        """
        with self._locked():
            procs = self.read_state()
            if procs is None:
                return []
            stopped = self._stop_all(procs, grace=grace)
            self.state_path.unlink(missing_ok=True)
            return stopped

    # ------------------------------------------------------------ internals

    def _start_all(self, started: list[Process], *, timeout: float, deadline: float) -> None:
        auto_port = self.port is None or self.port == 0
        for attempt in range(3):
            port = self._choose_port()
            try:
                for comp in self.components(port):
                    proc = self._spawn(comp)
                    started.append(proc)
                    self._write_state(started)
                    self._wait_ready(proc, timeout=timeout, deadline=deadline)
                return
            except _PortTaken:
                # Someone took the free port between our check and the server's bind.
                self._stop_all(started)
                started.clear()
                if not auto_port or attempt == 2:
                    raise ConfigError(
                        f"port {port} on {HOST} was taken while the stack started; "
                        "try again, or give another --port"
                    ) from None

    def _choose_port(self) -> int:
        if self.port:
            if not _port_free(self.port):
                raise ConfigError(
                    f"port {self.port} on {HOST} is in use; stop what listens there, "
                    "or choose another port (0 picks a free one)"
                )
            return self.port
        if self.port is None and _port_free(DEFAULT_PORT):
            return DEFAULT_PORT
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port: int = s.getsockname()[1]
            return port

    def _spawn(self, comp: Component) -> Process:
        log_path = self.logs_dir / f"{comp.name}.log"
        env = {**os.environ, **comp.env}
        env["NO_PROXY"] = env["no_proxy"] = _no_proxy(env)
        with open(log_path, "ab") as log:
            log.write(f"\n=== {_now()} storeops up: {' '.join(comp.argv)}\n".encode())
            log.flush()
            try:
                popen = subprocess.Popen(
                    comp.argv,
                    env=env,
                    cwd=self.home,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: `down` stops its children
                )
            except OSError as exc:
                raise StackError(f"{comp.name}: cannot run {comp.argv[0]}: {exc}") from exc
        _CHILDREN[popen.pid] = popen
        token = _start_token(popen.pid)
        if token is None:  # exited at once; _wait_ready reports it with the log
            token = "exited"
        return Process(
            name=comp.name,
            pid=popen.pid,
            pgid=popen.pid,
            start_token=token,
            boot_id=_boot_id(),
            argv=list(comp.argv),
            port=comp.port,
            health_url=comp.health_url,
            urls=dict(comp.urls),
            log=str(log_path),
            started_at=_now(),
        )

    def _wait_ready(
        self, proc: Process, *, timeout: float, deadline: float, hint: str = ""
    ) -> None:
        """Poll health (retrying refusals and 503s) until ready, exited or out of time."""
        while True:
            if not _pid_running(proc.pid):
                tail = _tail(Path(proc.log))
                if proc.port is not None and "already in use" in tail:
                    raise _PortTaken
                raise StackError(
                    f"{proc.name} exited while starting; see {proc.log}"
                    + (f":\n{_indent(tail)}" if tail else "")
                    + self._template_hint(proc)
                )
            if proc.health_url is None or _healthy(proc.health_url):
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{proc.name} did not answer {proc.health_url} within {timeout:g} s; "
                    f"see {proc.log}{hint}"
                )
            time.sleep(0.1)

    def _template_hint(self, proc: Process) -> str:
        if proc.name == PREFECT_SERVER and self.template_db.exists():
            return (
                f"\nif the database was copied from the cached template {self.template_db}, "
                "delete that template to have it built again"
            )
        return ""

    def _stop_all(self, procs: Sequence[Process], grace: float = 10.0) -> list[Stopped]:
        return [_stop(p, grace) for p in reversed(procs)]

    def _prepare_prefect_db(self) -> str:
        """Copy the pre-migrated template into a home that has no database yet.

        Migrating a new SQLite database and registering block types is most of a cold
        Prefect server start (~10 s against ~3.5 s from a copy on a 2-core machine).
        """
        self.prefect_home.mkdir(parents=True, exist_ok=True)
        if self.prefect_db.exists():
            return "existing"
        template = self.template_db
        self._remove_prefect_db()  # a stale -wal/-shm pair would be replayed into the copy
        if not template.exists():
            return "fresh"
        if not _is_migrated(template):  # damaged: drop it, this start builds a new one
            template.unlink(missing_ok=True)
            return "fresh"
        shutil.copyfile(template, self.prefect_db)  # one file: see _save_template
        return "copied"

    def _remove_prefect_db(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.prefect_db}{suffix}").unlink(missing_ok=True)

    def _save_template(self) -> None:
        """Snapshot the freshly migrated database as the template for later homes.

        Called right after the first healthy start, before any client has connected, so
        it holds only migrations and Prefect's block types. SQLite's backup API gives a
        consistent copy (WAL content included) even while the server runs. The template
        is kept in rollback-journal mode, so it is one file with no -wal/-shm beside it
        (Prefect switches each copy back to WAL); the rename makes it appear whole or
        not at all.
        """
        target = self.template_db
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        try:
            src = sqlite3.connect(f"file:{self.prefect_db}?mode=ro", uri=True)
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
                src.close()
            if _is_migrated(tmp):
                os.replace(tmp, target)
        except (sqlite3.Error, OSError):
            pass  # only a missed speed-up: the next fresh home builds it again
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)


class _PortTaken(Exception):
    pass


def _is_migrated(db: Path) -> bool:
    """A readable SQLite database on which Prefect's migrations have run."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT count(*) FROM alembic_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return bool(row and row[0])


# ---------------------------------------------------------------- processes


def _stop(proc: Process, grace: float) -> Stopped:
    t0 = time.monotonic()
    leader_ours = _is_ours(proc)
    if not leader_ours and _pid_running(proc.pid):
        return Stopped(proc.name, proc.pid, "not ours", 0.0)
    if not leader_ours and not _orphans_left(proc.pgid):
        _CHILDREN.pop(proc.pid, None)
        return Stopped(proc.name, proc.pid, "already gone", 0.0)
    # Our leader, or its group outliving it (a pgid is never reissued while it is in use).
    _signal_group(proc.pgid, signal.SIGTERM)
    if _wait_group_gone(proc, grace):
        return Stopped(proc.name, proc.pid, "stopped", time.monotonic() - t0)
    _signal_group(proc.pgid, signal.SIGKILL)
    if _wait_group_gone(proc, 5.0):
        return Stopped(proc.name, proc.pid, "killed", time.monotonic() - t0)
    raise StackError(f"{proc.name} (pid {proc.pid}) survived SIGKILL; see {proc.log}")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _wait_group_gone(proc: Process, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if not _pid_running(proc.pid) and not _orphans_left(proc.pgid):
            _CHILDREN.pop(proc.pid, None)
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _orphans_left(pgid: int) -> bool:
    """Whether any live process is still in the group (zombies do not count)."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[2] == str(pgid) and fields[0] not in "ZX":
            return True
    return False


def _pid_running(pid: int) -> bool:
    """Alive: our own child until reaped; any other process until it is a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    fields = _stat_fields(pid)
    return fields is None or fields[0] not in "ZX"


def _is_ours(proc: Process) -> bool:
    """The recorded process is still running and is the one we started."""
    return (
        _pid_running(proc.pid)
        and proc.boot_id == _boot_id()
        and proc.start_token == _start_token(proc.pid)
    )


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _start_token(pid: int) -> str | None:
    """When the process started: clock ticks since boot (Linux), or ps's lstart."""
    fields = _stat_fields(pid)
    if fields is not None:
        return f"ticks:{fields[19]}" if len(fields) > 19 else None
    try:
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"lstart:{out}" if out else None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return "unknown"


# ---------------------------------------------------------------- network


def _any_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    """Whether a server could listen on HOST:port now (SO_REUSEADDR, as uvicorn binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
        return True


# Loopback only, so never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(url: str, timeout: float = 2.0) -> bool:
    """GET url answers 200. Refusals, timeouts and 503 (SQLite busy) are just 'not yet'."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _no_proxy(env: Mapping[str, str]) -> str:
    current = env.get("NO_PROXY") or env.get("no_proxy") or ""
    names = [n for n in current.split(",") if n]
    return ",".join([*names, *(n for n in (HOST, "localhost") if n not in names)])


# ---------------------------------------------------------------- helpers


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "storeops"


def _prefect_version() -> str:
    try:
        return importlib.metadata.version("prefect")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(
            "Prefect is not installed in this environment; install storeops with its "
            "dependencies (pip install -e .)"
        ) from exc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    last = text.rsplit("\n=== ", 1)[-1]  # only the latest start's output
    return "\n".join(last.strip().splitlines()[1:][-lines:])


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


# ---------------------------------------------------------------- commands


def cmd_up(
    home: Path,
    *,
    port: int | None = None,
    timeout: float = 60.0,
    storeops_env: Mapping[str, str] | None = None,
) -> int:
    """`storeops up`: start the stack (or reuse it) and print where everything is."""
    stack = Stack(home, port=port, storeops_env=storeops_env)
    try:
        result = stack.up(timeout=timeout)
    except StoreopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.started:
        how = {"copied": "database from template", "fresh": "new database, first start"}
        note = f", {how[result.template]}" if result.template in how else ""
        print(f"stack up in {result.seconds:.1f} s{note} (home {stack.home})")
    else:
        print(f"stack already up (home {stack.home})")
    for proc in result.processes:
        print(f"  {proc.name:<16} pid {proc.pid:<8} since {proc.started_at}")
    _print_urls(result.urls)
    print(f"  logs:           {stack.logs_dir}/")
    if "prefect_api" in result.urls:
        print(f"use it from another shell: export PREFECT_API_URL={result.urls['prefect_api']}")
    return 0


def cmd_down(home: Path) -> int:
    """`storeops down`: stop what `up` started under this home; nothing else."""
    try:
        stopped = Stack(home).down()
    except StoreopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not stopped:
        print(f"nothing to stop (no stack.json under {Path(home).absolute()})")
    for s in stopped:
        if s.outcome == "not ours":
            print(f"{s.name}: pid {s.pid} now belongs to another program; left it alone")
        elif s.outcome == "already gone":
            print(f"{s.name}: pid {s.pid} was already gone")
        else:
            print(f"{s.name}: {s.outcome} pid {s.pid} in {s.seconds:.1f} s")
    return 0


def cmd_status(home: Path) -> int:
    """`storeops status`: 0 up and healthy, 1 partly down or unhealthy, 3 not running."""
    try:
        status = Stack(home).status()
    except StoreopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return STATUS_UNHEALTHY
    if not status.processes:
        print(f"stack not running (home {status.home})")
        return STATUS_NOT_RUNNING
    urls: dict[str, str] = {}
    for st in status.processes:
        proc = st.process
        if not st.running:
            state = "not running"
        elif st.healthy is None:
            state = "running"
        else:
            state = "healthy" if st.healthy else "NOT HEALTHY"
        print(f"  {proc.name:<16} pid {proc.pid:<8} {state:<12} log {proc.log}")
        urls.update(proc.urls)
    _print_urls(urls)
    if status.healthy:
        return STATUS_OK
    print("run `storeops up` to restart what is down, or `storeops down` to stop the rest")
    return STATUS_UNHEALTHY


def _print_urls(urls: Mapping[str, str]) -> None:
    labels = {"prefect_api": "Prefect API", "prefect_ui": "Prefect UI"}
    for key, url in urls.items():
        print(f"  {labels.get(key, key) + ':':<16}{url}")
