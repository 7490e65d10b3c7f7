"""The django-oscar test store (tests/teststore) for connector tests: seeded, on loopback.

A migrated and seeded SQLite snapshot is built once per machine, day and store source
(~12 s) under ~/.cache/storeops/oscar/; each session copies it and starts gunicorn with two
workers on a free loopback port (~1 s). Needs django-oscar, django-oscar-api and gunicorn in
this interpreter's environment; without them the `oscar_store` fixture skips, or fails when
STOREOPS_REQUIRE_OSCAR=1. Imports neither Django nor storeops: the store runs in subprocesses.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.teststore.shop import tokens

TESTSTORE = Path(__file__).resolve().parent.parent / "teststore"
# distribution -> module that must be importable
REQUIRED = {"django-oscar": "oscar", "django-oscar-api": "oscarapi", "gunicorn": "gunicorn"}
# versions that change what migrate and seed_shop produce
SNAPSHOT_VERSIONS = ("django", "django-oscar", "django-oscar-api", "djangorestframework")
SEED = 7
SEED_ORDERS = 30
# Small pages, so every list the connectors read has several (the store's default is 50).
PAGE_SIZE = 10
REQUIRE_ENV = "STOREOPS_REQUIRE_OSCAR"
READY_PATH = "/api/ops/orders/?until=2000-01-01T00:00:00Z"  # auth, Django and SQLite; no rows
INSTALL_HINT = "pip install -e '.[dev]' (django-oscar==4.2.1, django-oscar-api==3.3.0, gunicorn)"


class OscarStoreError(RuntimeError):
    """The test store could not be built or started; the message holds its output."""


@dataclass(frozen=True)
class OscarStore:
    """A running test store. Tokens are the fixed test-only keys of shop/tokens.py."""

    base_url: str  # http://127.0.0.1:<port>, no trailing slash
    token: str  # staff `opsbot`: exactly the connector's model permissions
    admin_token: str  # superuser `admin`
    customer_token: str  # `alice`, not staff: the admin and ops APIs answer 403
    db_path: Path  # this session's copy of the snapshot (WAL mode while running)
    log_path: Path  # gunicorn's output
    page_size: int
    snapshot_build_seconds: float  # 0.0 when the cached snapshot was used
    start_seconds: float  # copy + gunicorn start until the first 200

    def headers(self, token: str | None = None) -> dict[str, str]:
        """`Authorization` header for `token` (default: the connector's)."""
        return {"Authorization": f"Token {token or self.token}"}


def missing_packages() -> list[str]:
    """Distributions of REQUIRED that this interpreter cannot import."""
    return [dist for dist, module in REQUIRED.items() if importlib.util.find_spec(module) is None]


def require_oscar() -> None:
    """Skip the calling test (fail under STOREOPS_REQUIRE_OSCAR=1) if the store cannot run."""
    missing = missing_packages()
    if not missing:
        return
    reason = (
        f"the django-oscar test store needs {', '.join(missing)} in {sys.prefix}; "
        f"install the dev extras: {INSTALL_HINT}"
    )
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "storeops" / "oscar"


def snapshot_key(anchor: str) -> str:
    """Hash of what determines the snapshot: store source, versions, seed options, anchor."""
    digest = hashlib.sha256()
    for path in sorted(TESTSTORE.rglob("*")):
        relative = path.relative_to(TESTSTORE)
        if (
            not path.is_file()
            or "__pycache__" in relative.parts
            or path.suffix == ".pyc"
            or ".sqlite3" in path.name
        ):
            continue
        digest.update(f"{relative.as_posix()}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    versions = [f"{d}=={importlib.metadata.version(d)}" for d in SNAPSHOT_VERSIONS]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    digest.update(f"{versions} {python} seed={SEED} orders={SEED_ORDERS} {anchor}".encode())
    return digest.hexdigest()[:20]


def ensure_snapshot(directory: Path | None = None) -> tuple[Path, float]:
    """The seeded snapshot for today (UTC), built first if missing; (path, build seconds).

    Orders are placed in the 30 days before today's 00:00 UTC, so the snapshot is rebuilt
    once a day. Concurrent pytest processes wait on a file lock; the file appears by an
    atomic rename, so a reader never sees half a database.
    """
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    anchor = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
    key = snapshot_key(anchor)
    snapshot = directory / f"{key}.sqlite3"
    if snapshot.exists():
        return snapshot, 0.0
    with open(directory / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if snapshot.exists():  # another process built it while we waited
                return snapshot, 0.0
            started = time.perf_counter()
            _build_snapshot(snapshot, anchor)
            built = time.perf_counter() - started
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _prune(directory, keep=snapshot)
    return snapshot, built


def _build_snapshot(snapshot: Path, anchor: str) -> None:
    building = snapshot.with_name(f"{snapshot.stem}.{os.getpid()}.building.sqlite3")
    env = _store_env(building, PAGE_SIZE)
    try:
        _manage(["migrate", "--noinput"], env)
        seed = ["seed_shop", "--orders", str(SEED_ORDERS), "--seed", str(SEED)]
        _manage([*seed, "--anchor", anchor], env)
        # the store runs in WAL mode; fold the log back so that one file is the whole database
        with contextlib.closing(sqlite3.connect(building)) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")
        os.replace(building, snapshot)
    finally:
        for leftover in (building, *_sidecars(building)):
            leftover.unlink(missing_ok=True)


def _manage(args: list[str], env: dict[str, str]) -> None:
    command = [sys.executable, "manage.py", *args]
    try:
        done = subprocess.run(
            command, cwd=TESTSTORE, env=env, capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired as exc:
        raise OscarStoreError(f"`{' '.join(command)}` took more than 600 s") from exc
    if done.returncode != 0:
        raise OscarStoreError(
            f"`{' '.join(command)}` in {TESTSTORE} exited with {done.returncode}:\n"
            f"{(done.stdout + done.stderr)[-4000:]}"
        )


def _prune(directory: Path, keep: Path, max_age_days: float = 7) -> None:
    """Remove snapshots (and their lock files) unused for a week: one is made per day."""
    cutoff = time.time() - max_age_days * 86400
    for path in [*directory.glob("*.sqlite3"), *directory.glob("*.lock")]:
        if path.stem != keep.stem and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


def _sidecars(db: Path) -> list[Path]:
    return [db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def _store_env(db: Path, page_size: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="shop.settings",
        SHOP_DB=str(db),
        SHOP_PAGE_SIZE=str(page_size),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@contextlib.contextmanager
def running_oscar_store(
    folder: Path, *, page_size: int = PAGE_SIZE, workers: int = 2, timeout: float = 60.0
) -> Iterator[OscarStore]:
    """Copy the snapshot into `folder`, serve it with gunicorn, yield the store, stop it.

    gunicorn gets an already listening socket (fd://), so there is no window in which
    another process can take the port. It runs in its own process group: SIGTERM first,
    SIGKILL for the group when it has not stopped after 5 s.
    """
    snapshot, built = ensure_snapshot()
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / "shop.sqlite3"
    shutil.copyfile(snapshot, db_path)
    log_path = folder / "gunicorn.log"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "shop.wsgi:application",
            f"--bind=fd://{listener.fileno()}",
            f"--workers={workers}",
            "--graceful-timeout=4",
            "--log-level=warning",
        ]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=TESTSTORE,
                env=_store_env(db_path, page_size),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
                start_new_session=True,
            )
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_until_ready(process, base_url, log_path, timeout)
        yield OscarStore(
            base_url=base_url,
            token=tokens.OPSBOT_TOKEN,
            admin_token=tokens.ADMIN_TOKEN,
            customer_token=tokens.ALICE_TOKEN,
            db_path=db_path,
            log_path=log_path,
            page_size=page_size,
            snapshot_build_seconds=built,
            start_seconds=time.perf_counter() - started,
        )
    finally:
        _stop(process)


def _wait_until_ready(
    process: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout: float
) -> None:
    """Until an authenticated API call answers 200 (both Django and the database are up)."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Token {tokens.OPSBOT_TOKEN}"}
    last = "no answer yet"
    with httpx.Client(base_url=base_url, timeout=2.0, headers=headers) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise OscarStoreError(
                    f"gunicorn exited with {process.returncode} while starting; its log "
                    f"({log_path}):\n{_tail(log_path)}"
                )
            try:
                response = client.get(READY_PATH)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:300]}"
            time.sleep(0.05)
    raise OscarStoreError(
        f"the test store at {base_url} was not ready after {timeout:.0f} s ({last}); "
        f"gunicorn's log ({log_path}):\n{_tail(log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError as exc:
        return f"(cannot read: {exc})"
