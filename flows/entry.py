"""Entry points that Prefect deployments start (prefect.yaml): manual, scheduled, triggered.

Outer edge (Prefect). Each records the new run in the ledger and drives it through the
`run-sop` flow (as a subflow) until only people or timers remain; from then on the
runner of `storeops up` wakes it. A deployment's flow run therefore never waits for people.
"""

from __future__ import annotations

from typing import Any

import anyio
from prefect import flow

from flows.run_sop import run_sop
from storeops.settings import Settings

__all__ = ["promotion_prep", "raise_alert", "start_sop"]


@flow(name="start-sop", persist_result=False)
async def start_sop(
    sop: str,
    params: dict[str, Any] | None = None,
    key: str | None = None,
    actor: str = "scheduler",
) -> str:
    """Start SOP `sop` with `params` (checked against the SOP) and drive it."""
    engine = Settings().engine()
    try:
        run_id: str = await anyio.to_thread.run_sync(
            lambda: engine.start(sop, params or {}, actor=actor, key=key, drive=False)
        )
        record = engine.ledger.get_run(run_id)
    finally:
        engine.close()
    await run_sop(run_id, label=f"{sop}/{record.business_key or run_id}")
    return run_id


@flow(name="promotion-prep", persist_result=False)
async def promotion_prep(promo_code: str, margin_floor: float = 0.15) -> str:
    """大促准备 / Promotion prep: the Prefect UI renders these parameters as a form."""
    params = {"promo_code": promo_code, "margin_floor": margin_floor}
    return await start_sop("promotion-prep", params, actor="prefect-ui")


@flow(name="raise-alert", persist_result=False)
async def raise_alert(
    key: str, sop: str = "peak-traffic", severity: str | None = None, summary: str | None = None
) -> str:
    """Start the runbook for an alert once per open key (event-triggered deployments)."""
    engine = Settings().engine()
    run_id: str
    try:
        run_id, _started = await anyio.to_thread.run_sync(
            lambda: engine.raise_alert(
                key, sop=sop, severity=severity, summary=summary, drive=False
            )
        )
    finally:
        engine.close()
    await run_sop(run_id, label=f"{sop}/{key}")
    return run_id
