"""The run-sop flow against a real Prefect server (one per test session, see conftest)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from flows.run_sop import artifact_key, drive_on_prefect
from storeops.settings import Settings
from tests.conftest import FIXTURES, VALID


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    env = {
        "STOREOPS_HOME": str(tmp_path),
        "STOREOPS_LEDGER": str(tmp_path / "ledger.db"),
        "STOREOPS_SOPS": str(VALID),
        "STOREOPS_TEMPLATES": str(FIXTURES / "templates"),
        "STOREOPS_ROSTER": str(VALID / "team.yaml"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def _flow_runs(api: str, tag: str) -> list[dict[str, object]]:
    found = httpx.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"tags": {"all_": [tag]}}, "sort": "EXPECTED_START_TIME_ASC"},
        timeout=30,
    )
    found.raise_for_status()
    runs: list[dict[str, object]] = found.json()
    return runs


def test_run_sop_drives_names_tags_and_publishes(prefect_api_url: str, settings: Settings) -> None:
    engine = settings.engine()
    run_id = engine.start("approvals", {}, actor="ann", drive=False)
    assert "running" == asyncio.run(drive_on_prefect(run_id))
    assert ["draft"] == [t.step for t in engine.load(run_id)[0].active_tasks()]

    engine.complete(
        run_id,
        "draft",
        actor="cai",
        fields={"title": "t", "price": 2},
        checklist={0: "done"},
        drive=False,
    )
    assert "running" == asyncio.run(drive_on_prefect(run_id))  # the wake after a completion
    assert ["approve"] == [t.step for t in engine.load(run_id)[0].active_tasks()]

    runs = _flow_runs(prefect_api_url, "sop:approvals")
    assert 2 == len(runs)
    assert {f"approvals/{run_id}"} == {r["name"] for r in runs}
    assert all(r["state_type"] == "COMPLETED" for r in runs)
    artifact = httpx.get(f"{prefect_api_url}/artifacts/{artifact_key(run_id)}/latest", timeout=30)
    artifact.raise_for_status()
    text = artifact.json()["data"]
    assert "approve" in text
    assert "class approve current" in text
    engine.ledger.close()
