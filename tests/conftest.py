"""Shared test helpers: paths, an in-memory engine with a fake clock and a scripted store."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from storeops.durations import iso_to_us
from storeops.ledger import open_ledger
from storeops.loader import load_roster
from storeops.runtime import Engine, MemoryOutbox
from storeops.simulate import FakeClock, Outcome, ScriptedExecutor
from storeops.templates import TemplateLibrary

# CI must not fail on a random draw nobody can reproduce: it uses a fixed seed per test,
# while local runs keep exploring new examples (and store failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
VALID = FIXTURES / "sops" / "valid"
INVALID = FIXTURES / "sops" / "invalid"
T0 = iso_to_us("2026-11-09T01:00:00Z")
MINUTE = 60_000_000
HOUR = 60 * MINUTE


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """Engine over the valid fixtures (or a given folder), a SQLite file ledger, fake clock."""
    made: list[Engine] = []

    def make(
        sops_dir: Path = VALID,
        actions: dict[str, list[dict[str, Any]]] | None = None,
        ledger: str | None = None,
    ) -> Engine:
        roster, problems = load_roster(sops_dir / "team.yaml")
        assert roster is not None, problems
        executor = ScriptedExecutor(
            {k: [Outcome.model_validate(o) for o in v] for k, v in (actions or {}).items()}
        )
        engine = Engine(
            ledger=open_ledger(ledger or str(tmp_path / f"ledger{len(made)}.db")),
            sops_dir=sops_dir,
            templates=TemplateLibrary(FIXTURES / "templates"),
            roster=roster,
            executor=executor,
            outbox=MemoryOutbox(),
            clock=FakeClock(T0),
        )
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.ledger.close()


# ---------------------------------------------------------------- Prefect server (session)
# One real Prefect server per test session (tests/prefect_server.py, storeops.stack).
# Tests that need Prefect take `prefect_api_url`; it is started on first use only.


@pytest.fixture(scope="session")
def prefect_api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """API URL (…/api) of the session's Prefect server; PREFECT_API_URL is set meanwhile."""
    from tests.prefect_server import session_prefect_server

    with session_prefect_server(tmp_path_factory.mktemp("prefect")) as api_url:
        yield api_url


# ---------------------------------------------------------------- end Prefect server

from tests.postgres import pg_database  # noqa: E402, F401 - the session PostgreSQL fixture


def stop_process(
    process: subprocess.Popen[bytes], log: Path | None = None, seconds: float = 30
) -> int:
    """SIGTERM `process` and wait; one that does not leave in time is killed (never left
    behind for other tests) and fails the test with the tail of its log."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
        tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
        pytest.fail(f"{process.args} did not stop within {seconds:.0f} s of SIGTERM\n{tail}")
