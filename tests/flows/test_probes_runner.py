"""A probe breach starts its runbook through the runner, and recovery records the
all-clear — with a real storefront stand-in (http.server on 127.0.0.1), a real runner and
the session's Prefect server."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from storeops.settings import Settings
from tests.conftest import FIXTURES, VALID, stop_process
from tests.flows.test_runner import _runner_env, _start_runner, wait_for


class Storefront:
    def __init__(self) -> None:
        self.status = 503
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(front.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"


@pytest.fixture
def storefront() -> Iterator[Storefront]:
    front = Storefront()
    front.thread.start()
    yield front
    front.server.shutdown()
    front.server.server_close()


def test_a_breach_starts_the_runbook_and_recovery_clears_it(
    prefect_api_url: str, tmp_path: Path, storefront: Storefront
) -> None:
    library = tmp_path / "sops"
    shutil.copytree(VALID, library)
    (library / "monitors.yaml").write_text(
        f"""
probes:
  storefront:
    kind: http
    url: {storefront.url}
    samples: 2
    timeout: 2s
    every: 1s
    breach: {{error_rate: {{above: 0.5}}}}
    clear_after: 2
    alert: {{key: storefront-down, sop: incident, severity: sev1}}
""",
        encoding="utf-8",
    )
    env = {**_runner_env(prefect_api_url, tmp_path), "STOREOPS_SOPS": str(library)}
    settings = Settings(
        home=str(tmp_path),
        ledger=str(tmp_path / "ledger.db"),
        sops=str(library),
        templates=str(FIXTURES / "templates"),
        roster=str(library / "team.yaml"),
    )
    engine = settings.engine()
    runner = _start_runner(env, tmp_path, "runner.log")
    try:
        incidents = lambda: engine.ledger.runs(sop_id="incident")  # noqa: E731
        wait_for(lambda: len(incidents()) == 1, seconds=60)
        run_id = incidents()[0].run_id
        wait_for(  # the runbook was driven: the commander has a task
            lambda: ["command"] == [t.step for t in engine.load(run_id)[0].active_tasks()],
            seconds=60,
        )
        wait_for(lambda: "alert.repeated" in kinds(engine, run_id), seconds=30)
        assert 1 == len(incidents())  # repeats join the open incident
        storefront.status = 200
        wait_for(lambda: "alert.cleared" in kinds(engine, run_id), seconds=60)
    finally:
        stop_process(runner, tmp_path / "runner.log")
    cleared = [e for e in engine.ledger.events(run_id) if e.type == "alert.cleared"]
    assert 1 == len(cleared)
    assert "storefront-down" == cleared[0].data["key"]
    assert engine.ledger.verify().ok
    engine.ledger.close()


def kinds(engine: Any, run_id: str) -> list[str]:
    return [e.type for e in engine.ledger.events(run_id)]
