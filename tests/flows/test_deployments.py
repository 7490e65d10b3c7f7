"""prefect.yaml against a real Prefect server: `prefect deploy --all` accepts it, and a
worker runs the manual promotion-prep deployment into a real SOP run in our ledger."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from storeops.settings import Settings
from tests.conftest import ROOT


def _env(api: str, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_API_URL": api,
        "STOREOPS_ROOT": str(ROOT),
        "STOREOPS_HOME": str(home),
        "STOREOPS_LEDGER": str(home / "ledger.db"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }


def test_deploy_all_then_a_worker_starts_promotion_prep(
    prefect_api_url: str, tmp_path: Path
) -> None:
    api = prefect_api_url
    pool = httpx.post(
        f"{api}/work_pools/", json={"name": "storeops", "type": "process"}, timeout=30
    )
    assert pool.status_code in (201, 409), pool.text
    bin_dir = Path(sys.executable).parent
    deployed = subprocess.run(
        [str(bin_dir / "prefect"), "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        env=_env(api, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert 0 == deployed.returncode, deployed.stdout + deployed.stderr
    found = httpx.post(f"{api}/deployments/filter", json={}, timeout=30).json()
    by_name = {d["name"]: d for d in found}
    expected = {
        "promotion-prep",
        "inventory-check-daily",
        "order-wave",
        "inquiry-sweep",
        "daily-plan",
        "weekly-report",
        "incident-runbook",
    }
    assert expected <= set(by_name)
    cron = by_name["inventory-check-daily"]["schedules"][0]["schedule"]
    assert ("0 8 * * *", "Asia/Shanghai") == (cron["cron"], cron["timezone"])
    assert 900 == by_name["order-wave"]["schedules"][0]["schedule"]["interval"]
    assert by_name["order-wave"]["schedules"][0]["active"]
    assert 300 == by_name["inquiry-sweep"]["schedules"][0]["schedule"]["interval"]
    for name, deployment in by_name.items():  # keep the shared server quiet from here on
        if deployment["schedules"]:
            paused = httpx.post(
                f"{api}/deployments/{deployment['id']}/pause_deployment", timeout=30
            )
            assert paused.status_code in (200, 204), (name, paused.text)
    form = by_name["promotion-prep"]["parameter_openapi_schema"]
    assert ["promo_code"] == form["required"]

    flow_run = httpx.post(
        f"{api}/deployments/{by_name['promotion-prep']['id']}/create_flow_run",
        json={"parameters": {"promo_code": "D11-TEST"}},
        timeout=30,
    ).json()
    worker = subprocess.run(
        [str(bin_dir / "prefect"), "worker", "start", "--pool", "storeops", "--run-once"],
        cwd=ROOT,
        env=_env(api, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert 0 == worker.returncode, worker.stdout + worker.stderr
    state = httpx.get(f"{api}/flow_runs/{flow_run['id']}", timeout=30).json()["state_type"]
    assert "COMPLETED" == state, worker.stdout + worker.stderr
    engine = Settings(home=str(tmp_path), ledger=str(tmp_path / "ledger.db")).engine()
    runs = engine.ledger.runs(sop_id="promotion-prep")
    assert ["D11-TEST"] == [r.business_key for r in runs]
    assert ["set_goals"] == [t.step for t in engine.load(runs[0].run_id)[0].active_tasks()]
    engine.ledger.close()
