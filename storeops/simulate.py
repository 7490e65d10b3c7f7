"""Simulate an SOP end to end: a fake clock, scripted people and scripted connector results.

Edge module: drives the real Engine (same completion path as the CLI and the inbox) over a
real SQLite ledger, so a scenario exercises exactly what production does, minus the
outside world. Prints a transcript and which states were covered.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError

from storeops import spec as s
from storeops.diagnostics import Diagnostic
from storeops.durations import iso_to_us, seconds_to_us
from storeops.errors import DefinitionError, OperationError, RunError
from storeops.ledger import Ledger
from storeops.roster import Roster
from storeops.runtime import BuiltinExecutor, Engine, MemoryOutbox
from storeops.templates import TemplateLibrary
from storeops.yamlsource import load_yaml


class Outcome(s.Model):
    """One scripted result of an operation: a result, or an error class to raise."""

    result: Any = None
    fail: str | None = None
    message: str = "scripted failure"
    retryable: bool = True
    retry_after: float | None = None


def _all_ticked(value: Any) -> Any:
    return {0: "done"} if value == "all" else value


class StepScript(s.Model):
    after: s.Duration = 0.0
    as_: str = Field(alias="as")
    done: str | None = None
    reject: str | None = None
    reason: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    evidence: dict[str, list[str]] = Field(default_factory=dict)
    checklist: Annotated[dict[int, str], BeforeValidator(_all_ticked)] = Field(
        default_factory=dict, description="item number -> done | n/a: reason; or `all`"
    )
    note: str | None = None
    expect_error: str | None = Field(
        default=None, description="the completion must be refused with this error class"
    )


class Expect(s.Model):
    status: str | None = None
    covers: list[str] = Field(default_factory=list)


def _instant(value: Any) -> Any:
    try:
        iso_to_us(str(value))
    except ValueError as exc:
        raise ValueError(
            f"expected an ISO 8601 instant such as 2026-11-09T09:00:00+08:00, found {value!r}"
        ) from exc
    return str(value)


class Scenario(s.Model):
    sop: str
    start_at: Annotated[str, BeforeValidator(_instant)] = "2026-11-09T01:00:00Z"
    as_: str = Field(alias="as")
    params: dict[str, Any] = Field(default_factory=dict)
    actions: dict[str, list[Outcome]] = Field(default_factory=dict)
    steps: list[StepScript] = Field(default_factory=list)
    settle: s.Duration = Field(default=30 * 86400.0, description="run timers this long after")
    expect: Expect = Field(default_factory=Expect)


class ScriptedExecutor:
    """Answers operations from the scenario's queues; the last outcome repeats."""

    def __init__(self, actions: Mapping[str, list[Outcome]]) -> None:
        self.queues = {k: list(v) for k, v in actions.items()}
        self.calls: list[tuple[str, dict[str, Any], str]] = []

    def scripts(self, uses: str) -> bool:
        """Whether the scenario scripts `uses` (then even `ledger.*` answers come from it)."""
        return bool(self.queues.get(uses))

    def run(
        self, uses: str, inputs: Mapping[str, Any], *, idempotency_key: str, timeout: float
    ) -> Any:
        self.calls.append((uses, dict(inputs), idempotency_key))
        queue = self.queues.get(uses)
        if not queue and uses.startswith("builtin."):
            return BuiltinExecutor().run(
                uses, inputs, idempotency_key=idempotency_key, timeout=timeout
            )
        if not queue:
            raise OperationError(
                "NotConfigured",
                f"the scenario scripts no result for {uses!r}; add it under `actions:`",
                retryable=False,
            )
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        if outcome.fail:
            raise OperationError(
                outcome.fail,
                outcome.message,
                retryable=outcome.retryable,
                retry_after=outcome.retry_after,
            )
        return outcome.result


@dataclass
class FakeClock:
    now: int

    def __call__(self) -> int:
        return self.now


@dataclass
class SimulationResult:
    run_id: str
    status: str
    lines: list[str]
    covered: list[str]
    uncovered: list[str]
    problems: list[str] = field(default_factory=list)
    outbox: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    doc, problems = load_yaml(path)
    if doc is None:
        raise DefinitionError(problems)
    try:
        return Scenario.model_validate(doc.data)
    except ValidationError as exc:
        diagnostics = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            line, column = doc.position(loc)
            where = ".".join(str(p) for p in loc)
            diagnostics.append(
                Diagnostic("SOP102", f"scenario {where}: {error['msg']}", str(path), line, column)
            )
        raise DefinitionError(diagnostics) from exc


def simulate(
    scenario: Scenario,
    *,
    ledger: Ledger,
    sops_dir: Path,
    templates: TemplateLibrary,
    roster: Roster,
    locale: str = "en",
) -> SimulationResult:
    """Run the scenario; every completion goes through Engine.complete like a real one."""
    from storeops.timeline import render

    clock = FakeClock(iso_to_us(scenario.start_at))
    outbox = MemoryOutbox()
    engine = Engine(
        ledger=ledger,
        sops_dir=sops_dir,
        templates=templates,
        roster=roster,
        executor=ScriptedExecutor(scenario.actions),
        outbox=outbox,
        clock=clock,
    )
    run_id = engine.start(scenario.sop, scenario.params, actor=scenario.as_)
    problems: list[str] = []
    for number, step in enumerate(scenario.steps, start=1):
        _run_timers(engine, clock, clock.now + seconds_to_us(step.after))
        problem = act(engine, step, run_id, number)
        if problem:
            problems.append(problem)
    _run_timers(engine, clock, clock.now + seconds_to_us(scenario.settle))
    record = ledger.get_run(run_id)
    runs = [run_id] + [r.run_id for r in ledger.runs() if r.parent_run == run_id]
    entered: set[str] = set()
    lines: list[str] = []
    for rid in runs:
        events = ledger.events(rid)
        entered |= {e.data["state"] for e in events if e.type == "state.entered"}
        loaded = engine.definition(ledger.get_run(rid).def_hash)
        if rid != run_id:
            lines.append(f"--- sub-run {rid}")
        lines += render(
            [{"type": e.type, "at": e.at, "data": e.data} for e in events], loaded.spec, locale
        )
    sop = engine.definition(record.def_hash).spec
    every = list(s.all_states(sop))
    covered = [sid for sid in every if sid in entered]
    uncovered = [sid for sid in every if sid not in entered]
    if scenario.expect.status and record.status != scenario.expect.status:
        problems.append(f"expected status {scenario.expect.status}, got {record.status}")
    for sid in scenario.expect.covers:
        if sid not in entered:
            problems.append(f"expected state {sid!r} to be covered")
    return SimulationResult(
        run_id, record.status, lines, covered, uncovered, problems, outbox.messages
    )


def act(
    engine: Engine, step: StepScript, run_id: str, number: int, *, drive: bool = True
) -> str | None:
    """Carry out one scripted person's step through `Engine.complete` (the path the CLI and
    the inbox take); return a problem, or None when it went as the script expects."""
    target = step.done or step.reject
    if target is None:
        return None
    where = run_waiting_for(engine, target) or run_id
    try:
        engine.complete(
            where,
            target,
            actor=step.as_,
            fields=step.fields,
            evidence={k: [_digest(v) for v in vs] for k, vs in step.evidence.items()},
            checklist=step.checklist,
            note=step.note,
            reject=step.reject is not None,
            reason=step.reason,
            drive=drive,
        )
    except RunError as exc:
        if type(exc).__name__ != step.expect_error:
            return f"step {number} ({step.as_} on {target}): {exc}"
        return None
    if step.expect_error:
        return f"step {number}: expected {step.expect_error}, but it was accepted"
    return None


def _run_timers(engine: Engine, clock: FakeClock, until: int) -> None:
    """Move the fake clock to `until`, firing every timer due on the way, in order, through
    the ledger's wake times (the same mechanism the runner and `storeops advance` use)."""
    for _ in range(100_000):  # bounded: each pass moves the clock or ends
        engine.tick(limit=100_000)
        wake = engine.next_wake()
        if wake is None or wake > until:
            break
        clock.now = max(clock.now, wake)
    clock.now = max(clock.now, until)
    engine.tick(limit=100_000)


def run_waiting_for(engine: Engine, step: str) -> str | None:
    """The newest running run where `step` waits for a person."""
    for record in reversed(engine.ledger.runs(status="running")):
        run, _head, _stored = engine.load(record.run_id)
        if run.token(step) is not None:
            return record.run_id
    return None


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()
