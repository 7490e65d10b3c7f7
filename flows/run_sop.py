"""The run-sop flow: one Prefect flow run carries one SOP run forward, then ends.

Outer edge (Prefect). The flow replays the run from the ledger and carries out what is
due through `storeops.runtime.Engine` (assignments, actions, notifications, sub-runs),
recording every result in the ledger first; it publishes the run's timeline and diagram
as a Prefect artifact and returns as soon as only people or future timers remain. It never
waits inside Prefect, so no worker is held while a promotion is prepared for two days: a
completion or a due timer starts the next flow run (see docs/wake-mechanisms.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import anyio
from prefect import flow, tags, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from storeops.errors import OperationError
from storeops.graph import to_mermaid
from storeops.machine import RunAction
from storeops.settings import Settings
from storeops.spec import localize
from storeops.timeline import render

__all__ = ["artifact_key", "drive_on_prefect", "run_sop"]


def _flow_run_name() -> str:
    params = flow_run.parameters
    return str(params.get("label") or params["run_id"])


def artifact_key(run_id: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "sop-" + re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")[:90]


@task(
    name="action",
    task_run_name="{step} · {uses} #{attempt}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=0,  # the SOP's retries are the engine's: each attempt is recorded in the ledger
)
def _action(step: str, uses: str, attempt: int, idempotency_key: str, call: Any) -> Any:
    result = call()
    if isinstance(result, OperationError):
        raise result  # the task run shows Failed, with the connector's message
    return result


def _as_prefect_task(effect: RunAction, call: Callable[[], Any]) -> Any:
    """One Prefect task run per action attempt, so the Prefect UI shows what a run did.

    Items of a `map` (an order wave) are not wrapped: a task run costs 40–60 ms of server
    time, which would cap a wave at ~20 orders/s (see docs/wake-mechanisms.md)."""
    if "[" in effect.step:
        return call()
    try:
        return _action(effect.step, effect.uses, effect.attempt, effect.idempotency_key, call)
    except OperationError as exc:
        return exc


@flow(name="run-sop", flow_run_name=_flow_run_name, persist_result=False, log_prints=False)
async def run_sop(run_id: str, label: str | None = None) -> str:
    """Drive `run_id` until only people or future timers remain; return its status."""
    engine = Settings().engine()
    engine.around_action = _as_prefect_task
    try:
        run = await anyio.to_thread.run_sync(engine.drive, run_id)
        await _publish(engine, run_id, run)
    finally:
        engine.close()
    status: str = run.status
    return status


async def _publish(engine: Any, run_id: str, run: Any) -> None:
    record = engine.ledger.get_run(run_id)
    events = [{"type": e.type, "at": e.at, "data": e.data} for e in engine.ledger.events(run_id)]
    waiting = [
        f"- `{t.step}` — {localize(run.states[t.state].title)} ({'/'.join(t.roles)})"
        for t in run.active_tasks()
    ]
    current = sorted({t.state for t in run.tokens.values()})
    diagram = to_mermaid(run.sop)
    if current:
        diagram += "    classDef current fill:#ffd966,stroke:#b45f06\n"
        diagram += "".join(f"    class {state} current\n" for state in current)
    text = "\n".join(
        [
            f"# {localize(run.sop.title)} — {record.business_key or run_id}",
            "",
            f"run `{run_id}` · {record.sop_id} v{record.version} · **{record.status}**",
            "",
            "## Waiting for" if waiting else "",
            *waiting,
            "",
            "## Timeline",
            "```",
            *render(events, run.sop),
            "```",
            "",
            "## Diagram",
            "```mermaid",
            diagram.rstrip(),
            "```",
        ]
    )
    await acreate_markdown_artifact(
        key=artifact_key(run_id),
        markdown=text,
        description=f"{record.sop_id} run {run_id}: timeline and current state",
    )


async def drive_on_prefect(
    run_id: str, settings: Settings | None = None, *, extra_tags: tuple[str, ...] = ()
) -> str:
    """Run the flow for one SOP run, named `SOP/KEY` and tagged `sop:SOP`."""
    from storeops.ledger import open_ledger

    ledger = open_ledger((settings or Settings()).ledger_url)  # the record only, not an Engine
    try:
        record = ledger.get_run(run_id)
    finally:
        ledger.close()
    label = f"{record.sop_id}/{record.business_key or run_id}"
    with tags(f"sop:{record.sop_id}", "storeops", *extra_tags):
        status: str = await run_sop(run_id, label=label)
    return status
