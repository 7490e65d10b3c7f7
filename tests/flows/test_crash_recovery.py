"""SIGKILL the runner at random moments across many runs: every run finishes, nothing in
the ledger is lost, and the store applies every write exactly once.

The store is `RecordingStore`, a real HTTP server on 127.0.0.1 that applies a write once
per idempotency key and, on purpose, sometimes refuses (503) or applies a write and then
drops the connection, so the runner sees failures as well as crashes.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from storeops.wake import wake_runner
from tests.conftest import stop_process
from tests.flows.recording_store import RecordingStore
from tests.flows.test_runner import _runner_env, _settings, _start_runner, wait_for

RUNS = 24
KILLS = 5


@pytest.mark.slow
def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    prefect_api_url: str, tmp_path: Path
) -> None:
    chance = random.Random(20261122)
    with RecordingStore(fault_rate=0.2, delay=0.4) as store:
        env = {**_runner_env(prefect_api_url, tmp_path), "STOREOPS_WEBHOOK_STORE": store.url}
        settings = _settings(tmp_path)
        engine = settings.engine()
        runner = _start_runner(env, tmp_path, "runner-0.log")
        try:
            runs = [
                engine.start("store-writes", {"order": f"#{1000 + n}"}, actor="ann", drive=False)
                for n in range(RUNS)
            ]
            for run_id in runs:
                assert wake_runner(tmp_path, run_id)
            interrupted = 0
            for kill in range(KILLS):
                if kill == 0:  # at least one kill lands while a write is on the wire
                    wait_for(lambda: store.in_flight > 0, seconds=60)
                else:
                    time.sleep(chance.uniform(0.3, 2.5))
                before = sum(store.deliveries.values())
                runner.kill()  # SIGKILL: no cleanup, flow runs and actions cut off mid-way
                runner.wait(timeout=30)
                interrupted += before < 2 * RUNS
                runner = _start_runner(env, tmp_path, f"runner-{kill + 1}.log")
            finished = lambda: all(  # noqa: E731
                engine.ledger.get_run(r).status == "succeeded" for r in runs
            )
            wait_for(finished, seconds=240)
        finally:
            stop_process(runner, tmp_path / f"runner-{KILLS}.log")

        keys: Counter[str] = Counter()
        reruns_after_crash = 0
        for run_id in runs:
            pending: set[str] = set()
            for event in engine.ledger.events(run_id):
                key = event.data.get("idempotency_key")
                if event.type == "action.attempted" and event.data["uses"] == "http.post":
                    keys[key] += 0
                    reruns_after_crash += key in pending  # attempted again, no result between
                    pending.add(key)
                elif event.type in ("action.succeeded", "action.failed"):
                    pending.clear()
        # every write the ledger asked for reached the store and was applied exactly once
        assert sorted(keys) == sorted(store.applied)
        assert 2 * RUNS == len(store.applied)
        assert {1} == set(store.applications.values())
        writes = Counter((w["write"]["order"], w["write"]["op"]) for w in store.applied.values())
        assert {1} == set(writes.values())
        # the test really exercised crashes and lost answers, not only the happy path
        assert interrupted >= 1
        assert reruns_after_crash >= 1  # a write cut off by SIGKILL was re-sent, same key
        assert store.faults["answer lost"] >= 1
        assert sum(store.deliveries.values()) > len(store.applied)  # repeats were absorbed
        report = engine.ledger.verify()
        assert report.ok, report.problems
        print(
            f"{RUNS} runs, {KILLS} SIGKILLs ({interrupted} while writes were in flight), "
            f"{sum(store.deliveries.values())} deliveries for {len(store.applied)} writes, "
            f"faults {dict(store.faults)}, re-runs after a crash {reruns_after_crash}"
        )
        engine.ledger.close()
