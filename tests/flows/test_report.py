"""The weekly-report flow against the session's real Prefect server: it publishes the
report as table artifacts, read back through the API; its deployment entry deploys."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.report import ARTIFACT_KEY, artifact_key, weekly_report
from storeops.durations import us_to_iso
from storeops.runtime import Engine
from tests.conftest import FIXTURES, HOUR, ROOT, T0, VALID

# The entry the weekly-report deployment adds to prefect.yaml (kept here word for word,
# so the test proves what the hand-over says).
DEPLOYMENT = """\
  - name: weekly-report
    description: 每周 SOP 报告 / Weekly SOP report (cycle times, slowest steps, on time), Mondays.
    entrypoint: flows/report.py:weekly_report
    parameters: {days: 7, lang: zh-CN}
    tags: ["report", "cron"]
    schedules:
      - cron: "0 9 * * 1"
        timezone: Asia/Shanghai
    work_pool: *pool
"""


def moment(us: int) -> datetime:
    return datetime.fromisoformat(us_to_iso(us).replace("Z", "+00:00"))


def advance(engine: Engine, until: int) -> None:
    """Move the fake clock to `until`, firing every timer on the way at its own time."""
    clock: Any = engine.clock
    while True:
        engine.tick(limit=1000)
        wake = engine.next_wake()
        if wake is None or wake > until:
            break
        clock.now = max(clock.now, wake)
    clock.now = until
    engine.tick(limit=1000)


@pytest.fixture
def ledger(
    make_engine: Callable[..., Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Engine:
    """One approvals run (5 h, a rejection, approve the slowest step), in the flow's
    environment."""
    env = {
        "STOREOPS_HOME": str(tmp_path),
        "STOREOPS_LEDGER": str(tmp_path / "ledger.db"),
        "STOREOPS_SOPS": str(VALID),
        "STOREOPS_TEMPLATES": str(FIXTURES / "templates"),
        "STOREOPS_ROSTER": str(VALID / "team.yaml"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    engine = make_engine(ledger=env["STOREOPS_LEDGER"])
    draft = {"title": "<b>Green tea</b>", "price": 9}
    run = engine.start("approvals", {}, actor="ann")
    advance(engine, T0 + HOUR)
    engine.complete(run, "draft", actor="cai", fields=draft, checklist={0: "done"})
    advance(engine, T0 + 2 * HOUR)
    engine.complete(run, "approve", actor="ann", reject=True, reason="price")
    advance(engine, T0 + 3 * HOUR)
    engine.complete(run, "draft", actor="cai", fields=draft, checklist={0: "done"})
    advance(engine, T0 + 5 * HOUR)
    engine.complete(run, "approve", actor="ann")
    engine.complete(run, "approve", actor="fay")
    assert "succeeded" == engine.ledger.get_run(run).status
    return engine


def _artifact(api: str, key: str) -> dict[str, Any]:
    found = httpx.get(f"{api}/artifacts/{key}/latest", timeout=30)
    found.raise_for_status()
    data: dict[str, Any] = found.json()
    return data


def test_weekly_report_publishes_table_artifacts(prefect_api_url: str, ledger: Engine) -> None:
    until = moment(T0 + 24 * HOUR)
    result = asyncio.run(weekly_report(days=7, lang="en", until=until))
    assert 1 == result["runs"]
    assert [artifact_key(t) for t in ("cycle", "steps", "slowest", "roles", "people")] == (
        result["artifacts"]
    )
    head = _artifact(prefect_api_url, ARTIFACT_KEY)
    assert "table" == head["type"]
    (row,) = json.loads(head["data"])
    assert "Approvals with four eyes and two of many" == row["Title"]
    assert ("1", "1", "5h", "1") == (
        row["Finished"],
        row["Succeeded"],
        row["Cycle p50"],
        row["Rejections"],
    )
    summary = head["description"]
    assert summary.startswith("# Weekly SOP report\n")
    assert "2026-11-03 01:00 → 2026-11-10 01:00 UTC · 1 run(s)" in summary
    assert (
        "cycle p50 5h / p90 5h; 1 rejection(s), 2 rework; slowest: Approve the listing" in summary
    )

    roles = json.loads(_artifact(prefect_api_url, "weekly-report-roles")["data"])
    assert [("lead", "100.0%"), ("clerk", "100.0%")] == [
        (r["Role"], r["On-time rate"]) for r in roles
    ]

    found = httpx.post(
        f"{prefect_api_url}/flow_runs/filter",
        json={"flows": {"name": {"any_": ["weekly-report"]}}},
        timeout=30,
    ).json()
    # runs the weekly deployment's schedule created (when prefect.yaml was deployed in this
    # session) are SCHEDULED for next Monday; the one this test ran completed
    ran = [r["state_type"] for r in found if r["deployment_id"] is None]
    assert ["COMPLETED"] == ran


def test_weekly_report_in_chinese_with_nothing_to_report(
    prefect_api_url: str, ledger: Engine
) -> None:
    before = datetime(2026, 10, 1, tzinfo=UTC)
    result = asyncio.run(weekly_report(until=before))
    assert 0 == result["runs"]
    head = _artifact(prefect_api_url, ARTIFACT_KEY)
    assert [] == json.loads(head["data"])
    assert "# 每周 SOP 报告" in head["description"]
    assert "本周没有运行。" in head["description"]


def test_deployment_entry_deploys_weekly_on_monday_morning(
    prefect_api_url: str, tmp_path: Path
) -> None:
    pool = httpx.post(
        f"{prefect_api_url}/work_pools/", json={"name": "storeops", "type": "process"}, timeout=30
    )
    assert pool.status_code in (201, 409), pool.text
    text = (ROOT / "prefect.yaml").read_text(encoding="utf-8")
    head = text[: text.index("deployments:")]
    prefect_file = tmp_path / "prefect.yaml"
    prefect_file.write_text(head + "deployments:\n" + DEPLOYMENT, encoding="utf-8")
    deployed = subprocess.run(
        [
            str(Path(sys.executable).parent / "prefect"),
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            str(prefect_file),
        ],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": prefect_api_url, "STOREOPS_ROOT": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert 0 == deployed.returncode, deployed.stdout + deployed.stderr
    found = httpx.post(f"{prefect_api_url}/deployments/filter", json={}, timeout=30).json()
    (weekly,) = [d for d in found if d["name"] == "weekly-report"]
    schedule = weekly["schedules"][0]["schedule"]
    assert ("0 9 * * 1", "Asia/Shanghai") == (schedule["cron"], schedule["timezone"])
    assert {"days": 7, "lang": "zh-CN"} == weekly["parameters"]
    assert "lang" in weekly["parameter_openapi_schema"]["properties"]
