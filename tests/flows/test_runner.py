"""The runner against a real Prefect server: wakes after completions, and timers by itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storeops.runtime import Engine
from storeops.settings import Settings
from storeops.wake import runner_headers, runner_url, wake_runner
from tests.conftest import FIXTURES, ROOT, VALID, stop_process


def _runner_env(prefect_api_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "STOREOPS_HOME": str(tmp_path),
        "STOREOPS_LEDGER": str(tmp_path / "ledger.db"),
        "STOREOPS_SOPS": str(VALID),
        "STOREOPS_TEMPLATES": str(FIXTURES / "templates"),
        "STOREOPS_ROSTER": str(VALID / "team.yaml"),
        "PREFECT_API_URL": prefect_api_url,
    }


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        home=str(tmp_path),
        ledger=str(tmp_path / "ledger.db"),
        sops=str(VALID),
        templates=str(FIXTURES / "templates"),
        roster=str(VALID / "team.yaml"),
    )


def _start_runner(env: dict[str, str], tmp_path: Path, log_name: str) -> subprocess.Popen[bytes]:
    log = (tmp_path / log_name).open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.runner"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    log.close()
    deadline = time.monotonic() + 60
    while runner_url(tmp_path) is None:
        assert process.poll() is None, (tmp_path / log_name).read_text()
        assert time.monotonic() < deadline, "the runner never became ready"
        time.sleep(0.1)
    return process


@pytest.fixture
def runner(prefect_api_url: str, tmp_path: Path) -> Iterator[Settings]:
    env = _runner_env(prefect_api_url, tmp_path)
    log = (tmp_path / "runner.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.runner"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while runner_url(tmp_path) is None:
            assert process.poll() is None, (tmp_path / "runner.log").read_text()
            assert time.monotonic() < deadline, "the runner never became ready"
            time.sleep(0.1)
        yield Settings(
            home=str(tmp_path),
            ledger=str(tmp_path / "ledger.db"),
            sops=str(VALID),
            templates=str(FIXTURES / "templates"),
            roster=str(VALID / "team.yaml"),
        )
    finally:
        try:
            assert 0 == stop_process(process, tmp_path / "runner.log")
        finally:
            log.close()
    assert not (tmp_path / "runner.json").exists()  # a clean stop removes its address


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "timed out"
        time.sleep(0.05)
    return time.monotonic() - started


def open_steps(engine: Engine, run_id: str) -> list[str]:
    return [t.step for t in engine.load(run_id)[0].active_tasks()]


def test_completions_wake_the_run_through_the_runner(runner: Settings) -> None:
    engine = runner.engine()
    run_id = engine.start("approvals", {}, actor="ann", drive=False)
    assert [] == open_steps(engine, run_id)
    assert wake_runner(runner.home, run_id)
    wait_for(lambda: open_steps(engine, run_id) == ["draft"])
    engine.complete(
        run_id,
        "draft",
        actor="cai",
        fields={"title": "t", "price": 2},
        checklist={0: "done"},
        drive=False,
    )
    assert wake_runner(runner.home, run_id)
    wait_for(lambda: open_steps(engine, run_id) == ["approve"])
    assigned = [e for e in engine.ledger.events(run_id) if e.type == "task.assigned"]
    assert ["draft", "approve"] == [e.data["step"] for e in assigned]
    assert not wake_runner(runner.home, "no-such-run")  # refused (404): nothing queued
    engine.ledger.close()


def test_timers_fire_without_anyone_acting(runner: Settings) -> None:
    engine = runner.engine()
    run_id = engine.start("quick-wait", {}, actor="ann", drive=False)
    assert wake_runner(runner.home, run_id)
    wait_for(lambda: open_steps(engine, run_id) == ["check"], seconds=30)  # the 2 s wait ended
    wait_for(lambda: engine.ledger.get_run(run_id).status == "succeeded", seconds=30)
    kinds = [e.type for e in engine.ledger.events(run_id)]
    assert "task.timed_out" in kinds  # the 3 s timeout fired (policy skip) with nobody there
    engine.ledger.close()


def test_a_completion_whose_wake_is_lost_is_still_picked_up(runner: Settings) -> None:
    """The ledger is written first; the wake is a nudge. Without it, the timer loop finds
    the run due (within its 2 s poll) and drives it."""
    engine = runner.engine()
    run_id = engine.start("approvals", {}, actor="ann", drive=False)  # no wake sent
    waited = wait_for(lambda: open_steps(engine, run_id) == ["draft"], seconds=30)
    engine.complete(
        run_id,
        "draft",
        actor="cai",
        fields={"title": "t", "price": 2},
        checklist={0: "done"},
        drive=False,
    )  # again no wake
    wait_for(lambda: open_steps(engine, run_id) == ["approve"], seconds=30)
    assert waited < 30
    engine.ledger.close()


def test_alerts_through_the_runner_start_one_runbook(runner: Settings) -> None:
    import httpx

    url = runner_url(runner.home)
    body = {"key": "storefront-5xx", "sop": "incident", "severity": "sev1"}
    auth = runner_headers(runner.home)
    assert 0o600 == (runner.home / "runner.json").stat().st_mode & 0o777  # the token's file
    anonymous = httpx.post(f"{url}/alerts", json=body, timeout=30)
    assert 401 == anonymous.status_code  # only this installation's own processes
    wrong = {"Authorization": "Bearer no"}
    assert 401 == httpx.post(f"{url}/wake/x", headers=wrong, timeout=30).status_code
    first = httpx.post(f"{url}/alerts", json=body, headers=auth, timeout=30).json()
    second = httpx.post(f"{url}/alerts", json=body, headers=auth, timeout=30).json()
    assert first["started"]
    assert not second["started"]
    assert first["run"] == second["run"]
    engine = runner.engine()
    wait_for(lambda: open_steps(engine, first["run"]) == ["command"])
    bad = httpx.post(
        f"{url}/alerts", json={**body, "sop": "no-such-runbook"}, headers=auth, timeout=30
    )
    assert 422 == bad.status_code
    assert "no-such-runbook" in bad.json()["detail"]
    outside = httpx.post(
        f"{url}/alerts", json={**body, "sop": "../valid/incident"}, headers=auth, timeout=30
    )
    assert 422 == outside.status_code  # an SOP id, never a path
    engine.ledger.close()


def test_a_killed_runner_loses_nothing(prefect_api_url: str, tmp_path: Path) -> None:
    """SIGKILL while an action runs: the next runner marks the orphaned flow run Crashed,
    and once the action's lease has passed re-runs it with the same idempotency key."""
    import httpx

    env = _runner_env(prefect_api_url, tmp_path)
    settings = _settings(tmp_path)
    engine = settings.engine()
    first = _start_runner(env, tmp_path, "runner-1.log")
    run_id = engine.start("slow-action", {}, actor="ann", drive=False)
    assert wake_runner(tmp_path, run_id)
    kinds = lambda: [e.type for e in engine.ledger.events(run_id)]  # noqa: E731
    wait_for(lambda: "action.attempted" in kinds())
    first.kill()  # SIGKILL: no cleanup at all
    first.wait(timeout=30)
    second = _start_runner(env, tmp_path, "runner-2.log")
    try:
        wait_for(lambda: open_steps(engine, run_id) == ["check"], seconds=60)
    finally:
        stop_process(second, tmp_path / "runner-2.log")
    attempts = [e.data for e in engine.ledger.events(run_id) if e.type == "action.attempted"]
    assert 2 == len(attempts)
    assert attempts[0]["idempotency_key"] == attempts[1]["idempotency_key"]
    assert 1 == kinds().count("action.succeeded")
    found = httpx.post(
        f"{prefect_api_url}/flow_runs/filter",
        json={"flow_runs": {"tags": {"all_": ["sop:slow-action"]}}},
        timeout=30,
    ).json()
    assert "CRASHED" in {r["state_type"] for r in found}
    assert engine.ledger.verify().ok
    engine.ledger.close()


def test_a_stopped_runner_leaves_mid_flow_and_the_next_one_finishes(
    prefect_api_url: str, tmp_path: Path
) -> None:
    """SIGTERM while a flow run is inside an action (when Prefect's engine has its own
    SIGTERM handler in place): the runner still leaves promptly and cleanly, and the next
    runner carries the run on."""
    from flows.runner import STOP_GRACE_SECONDS

    env = _runner_env(prefect_api_url, tmp_path)
    engine = _settings(tmp_path).engine()
    first = _start_runner(env, tmp_path, "runner-1.log")
    run_id = engine.start("slow-action", {}, actor="ann", drive=False)
    assert wake_runner(tmp_path, run_id)
    kinds = lambda: [e.type for e in engine.ledger.events(run_id)]  # noqa: E731
    wait_for(lambda: "action.attempted" in kinds())
    assert 0 == stop_process(first, tmp_path / "runner-1.log", seconds=STOP_GRACE_SECONDS + 15)
    assert not (tmp_path / "runner.json").exists()
    second = _start_runner(env, tmp_path, "runner-2.log")
    try:
        wait_for(lambda: open_steps(engine, run_id) == ["check"], seconds=60)
    finally:
        assert 0 == stop_process(second, tmp_path / "runner-2.log")
    assert 1 == kinds().count("action.succeeded")
    assert engine.ledger.verify().ok
    engine.ledger.close()
