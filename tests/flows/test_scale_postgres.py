"""Scale-out on PostgreSQL: a Prefect server and the ledger on PostgreSQL, two runners,
50 concurrent SOP runs. Every run completes, every completion is recorded once, every
chain verifies. Needs PostgreSQL at 127.0.0.1:5432 (trust auth), as on CI's machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from storeops.settings import Settings
from storeops.stack import Stack
from storeops.wake import wake_runner
from tests.conftest import FIXTURES, ROOT, VALID
from tests.flows.test_runner import open_steps, wait_for
from tests.postgres import SERVER, _admin

RUNS = 50


def test_two_runners_carry_fifty_runs_on_postgresql(pg_database: str, tmp_path: Path) -> None:
    import asyncio
    import uuid

    prefect_db = f"storeops_prefect_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{prefect_db}"'))
    host = SERVER.split("://", 1)[1]
    stack = Stack(
        tmp_path / "stack",
        port=0,
        ui=False,
        runner=False,
        database_url=f"postgresql+asyncpg://{host}/{prefect_db}",
    )
    ledger_url = f"{pg_database}?schema=scale_{uuid.uuid4().hex[:8]}"
    runners: list[subprocess.Popen[bytes]] = []
    homes = [tmp_path / "runner-1", tmp_path / "runner-2"]
    try:
        api = stack.up(timeout=180).urls["prefect_api"]
        for home in homes:
            env = {
                **os.environ,
                "PREFECT_API_URL": api,
                "STOREOPS_HOME": str(home),
                "STOREOPS_LEDGER": ledger_url,
                "STOREOPS_SOPS": str(VALID),
                "STOREOPS_TEMPLATES": str(FIXTURES / "templates"),
                "STOREOPS_ROSTER": str(VALID / "team.yaml"),
            }
            home.mkdir()
            log = (home / "runner.log").open("w")
            runners.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flows.runner", "--concurrency", "4"],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=log,
                )
            )
            log.close()
        wait_for(lambda: all((h / "runner.json").exists() for h in homes), seconds=60)
        engine = Settings(
            home=str(tmp_path),
            ledger=ledger_url,
            sops=str(VALID),
            templates=str(FIXTURES / "templates"),
            roster=str(VALID / "team.yaml"),
        ).engine()
        ids = [engine.start("scale", {"n": i}, actor="ann", drive=False) for i in range(RUNS)]
        for i, run_id in enumerate(ids):
            assert wake_runner(homes[i % 2], run_id)
        wait_for(lambda: all(open_steps(engine, r) == ["work"] for r in ids), seconds=240)
        for i, run_id in enumerate(ids):
            engine.complete(run_id, "work", actor="ann", drive=False)
            assert wake_runner(homes[(i + 1) % 2], run_id)
        wait_for(
            lambda: all(engine.ledger.get_run(r).status == "succeeded" for r in ids),
            seconds=240,
        )
        for run_id in ids:
            kinds = [e.type for e in engine.ledger.events(run_id)]
            assert 1 == kinds.count("task.completed"), run_id
            assert 2 == kinds.count("action.succeeded"), run_id
            assert 1 == kinds.count("run.finished"), run_id
        report = engine.ledger.verify()
        assert report.ok, report.problems
        assert RUNS == report.runs_checked
        engine.ledger.close()
        served = [(h / "runner.log").read_text() for h in homes]
        assert all("Finished in state Completed" in text for text in served)  # both worked
    finally:
        try:
            for process in runners:
                process.terminate()
            for process in runners:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:  # never leave a process behind
                    process.kill()
                    process.wait(timeout=30)
                    raise
        finally:
            stack.down()
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{prefect_db}" WITH (FORCE)'))
