"""Human-readable timelines of runs, from ledger events.

Pure core: standard library and spec helpers only. One line per event that a person
cares about; machine-internal book-keeping (vars saved, scope finished) is summarised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from storeops.spec import SopSpec, all_states, localize

_HIDDEN = {"vars.saved", "parallel.started"}


def _title(sop: SopSpec | None, state: str, locale: str) -> str:
    if sop is None:
        return state
    found = all_states(sop).get(state)
    title = localize(getattr(found, "title", None), locale) if found is not None else ""
    return f"{state} ({title})" if title else state


def describe(event: Mapping[str, Any], sop: SopSpec | None, locale: str = "en") -> str | None:
    """One line for an event (without its time), or None for book-keeping events."""
    kind = event["type"]
    d = event["data"]
    step = d.get("step", "")
    if kind in _HIDDEN:
        return None
    if kind == "run.started":
        key = f" key={d['key']}" if d.get("key") else ""
        params = ", ".join(f"{k}={v}" for k, v in d.get("params", {}).items())
        return f"run started by {d.get('actor')} ({d['sop']} v{d['version']}{key}) {params}"
    if kind == "state.entered":
        scope = d.get("scope", "")
        where = f"  [{scope.lstrip('/')}]" if scope else ""
        return f"→ {_title(sop, d['state'], locale)}{where}"
    if kind == "task.assigned":
        people = ", ".join(d.get("candidates", [])) or "nobody (no one holds the role)"
        due = f", due {d['due_at'][:16].replace('T', ' ')}Z" if d.get("due_at") else ""
        return f"  task {step} assigned to {d.get('role')}: {people}{due}"
    if kind == "task.completed":
        fields = ", ".join(f"{k}={v}" for k, v in d.get("fields", {}).items())
        evidence = sum(len(v) for v in d.get("evidence", {}).values())
        extra = f" [{fields}]" if fields else ""
        extra += f" +{evidence} evidence" if evidence else ""
        return f"  ✓ {step} completed by {d.get('actor')} as {d.get('role')}{extra}"
    if kind == "task.rejected":
        return f"  ✗ {step} rejected by {d.get('actor')}: {d.get('reason')}"
    if kind == "task.refused":
        return f"  ⊘ {d.get('actor')} refused on {step}: {d.get('message')}"
    if kind == "task.reminded":
        return f"  ⏰ reminder {d.get('number')} for {step} → {', '.join(d.get('people', []))}"
    if kind == "task.escalated":
        return f"  ⇧ {step} escalated to {d.get('to')} → {', '.join(d.get('people', []))}"
    if kind == "task.overdue":
        return f"  ! {step} is overdue"
    if kind == "task.timed_out":
        return f"  ⌛ {step} timed out (policy: {d.get('policy')})"
    if kind == "action.attempted":
        return f"  ⚙ {step}: {d.get('uses')} attempt {d.get('attempt')}"
    if kind == "action.succeeded":
        return f"  ⚙ {step}: succeeded"
    if kind == "action.failed":
        retry = "retryable" if d.get("retryable") else "final"
        return f"  ⚙ {step}: failed {d.get('error')} ({retry}): {d.get('message')}"
    if kind == "task.claimed":
        by = f" by {d['by']}" if d.get("by") else ""
        verb = "reassigned to" if d.get("by") else "claimed by"
        return f"  ⚑ {step} {verb} {d.get('actor')}{by}"
    if kind == "alert.repeated":
        return f"  ⚠ alert {d.get('key')} again ({d.get('severity') or 'no severity'})"
    if kind == "alert.cleared":
        return f"  ✓ alert {d.get('key')} cleared by {d.get('actor')}"
    if kind == "notice.sent":  # who was told of a task; shown only when someone was missed
        failed = d.get("failed") or {}
        return f"  ✉ {step}: could not reach {', '.join(failed)}" if failed else None
    if kind == "notification.sending":
        return None  # the delivery's claim; `sent` or `failed` follows and says it all
    if kind == "notification.failed":
        return f"  ✉ {step}: delivery failed {d.get('error')}: {d.get('message')}"
    if kind == "notification.sent":
        return f"  ✉ {step}: sent to {', '.join(d.get('people', []) or d.get('to', []))}"
    if kind == "map.started":
        return f"  ⧉ {step}: {len(d.get('items', []))} items"
    if kind == "wait.started":
        return f"  ⏸ {step}: waiting"
    if kind == "scope.finished":
        if d.get("status") == "succeeded":
            return None
        return f"  branch {d['scope'].lstrip('/')} {d.get('status')}"
    if kind == "call.started":
        return f"  ↳ {step}: started sub-run {d.get('child')}"
    if kind == "call.finished":
        return f"  ↲ {step}: sub-run {d.get('child')} {d.get('status')}"
    if kind == "run.finished":
        status = d.get("status")
        why = f": {d.get('error')} at {d.get('state')} {d.get('message') or ''}".rstrip()
        return f"run {status}" + ("" if status == "succeeded" else why)
    return f"{kind} {d}"


def render(
    events: Iterable[Mapping[str, Any]], sop: SopSpec | None, locale: str = "en"
) -> list[str]:
    """Timeline lines: `2026-11-20 09:00:00  text`."""
    lines = []
    for event in events:
        text = describe(event, sop, locale)
        if text is not None:
            at = str(event["at"])[:19].replace("T", " ")
            lines.append(f"{at}  {text}")
    return lines
