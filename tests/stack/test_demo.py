"""`storeops demo`, the README's first command, end to end in a fresh home: it brings up
the stack, runs promotion prep through Prefect against the local store, and stops the
stack again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storeops.ledger import open_ledger
from storeops.stack import Stack
from tests.conftest import ROOT


@pytest.mark.slow
def test_demo_runs_promotion_prep_on_the_stack_and_cleans_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOREOPS_", "PREFECT_"))}
    env["STOREOPS_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "storeops.cli", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert 0 == done.returncode, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "0 error(s)" in out
    assert "succeeded" in out
    assert "intact" in out
    assert "refused (NotAllowedError), recorded" in out
    assert "run-sop flow run(s) carried this run" in out
    assert "stack stopped" in out
    assert not Stack(tmp_path / "home").status().running  # nothing left behind
    ledger = open_ledger(str(tmp_path / "home" / "ledger.db"))
    try:
        (run,) = ledger.runs(sop_id="promotion-prep")
        kinds = [e.type for e in ledger.events(run.run_id)]
        assert "succeeded" == run.status
        uses = {e.data["uses"] for e in ledger.events(run.run_id) if e.type == "action.attempted"}
        assert {"store.inventory_levels", "store.list_orders"} == uses  # the local store
        assert "task.refused" in kinds
        assert ledger.verify().ok
    finally:
        ledger.close()
