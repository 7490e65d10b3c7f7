"""The engine's edge: start runs, complete steps, and drive runs by carrying out effects.

Edge module: joins the pure machine to the ledger, the roster, templates and an executor.
Every change to a run goes through here, and the ledger is written first: a completion is
recorded before anything reacts to it. Appends use optimistic concurrency (expected head
sequence), so two people completing one step at once end with exactly one completion.
Must not import Prefect or httpx (issue 3's flow calls into this module).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from jinja2 import TemplateError

from storeops import machine as m
from storeops import spec as s
from storeops.durations import iso_to_us, parse_duration, us_to_iso
from storeops.errors import (
    AlreadyCompletedError,
    ConfigError,
    DefinitionError,
    InvalidInputError,
    NotAllowedError,
    OperationError,
    RunError,
    RunNotFoundError,
    StepNotActiveError,
    StoreopsError,
)
from storeops.expressions import Expressions
from storeops.ledger import (
    ConcurrentAppendError,
    Ledger,
    LedgerError,
    NewEvent,
    RunExistsError,
    RunRecord,
    StoredEvent,
)
from storeops.ledger import RunNotFoundError as LedgerRunNotFound
from storeops.loader import Checker, LoadedSop, from_bundle
from storeops.roster import Roster
from storeops.templates import Rendered, TemplateLibrary

log = logging.getLogger("storeops.engine")

Clock = Callable[[], int]

LEASE_GRACE_US = m.LEASE_GRACE_US
#: A driver holds a run this long; then the runner's timer loop may take it over (double
#: driving is safe: assignments, actions and notifications are claimed; this saves work).
DRIVE_LEASE_US = 15_000_000


def wall_clock() -> int:
    return time.time_ns() // 1000


class Executor(Protocol):
    """Carries out connector operations; raises OperationError on failure."""

    def run(
        self, uses: str, inputs: Mapping[str, Any], *, idempotency_key: str, timeout: float
    ) -> Any: ...


class Outbox(Protocol):
    """Delivers messages to people (chat, e-mail); issue 4 adds real channels."""

    def deliver(self, person: str, channel: str, subject: str, text: str, link: str) -> str: ...

    def can_reach(self, channel: str) -> bool:
        """Whether this outbox has a sender for `channel` (else the engine uses the inbox)."""
        ...


@dataclass
class MemoryOutbox:
    """Keeps delivered messages in memory (the simulator and the in-process CLI)."""

    messages: list[dict[str, str]] = field(default_factory=list)

    def deliver(self, person: str, channel: str, subject: str, text: str, link: str) -> str:
        self.messages.append(
            {"person": person, "channel": channel, "subject": subject, "text": text, "link": link}
        )
        return f"outbox-{len(self.messages)}"

    def can_reach(self, channel: str) -> bool:
        return True


class BuiltinExecutor:
    """Operations that need no outside system; store operations need issue 4's connectors.

    (`render.template` is carried out by the Engine itself, from the run's pinned sources.)
    """

    def run(
        self, uses: str, inputs: Mapping[str, Any], *, idempotency_key: str, timeout: float
    ) -> Any:
        if uses == "builtin.echo":
            return dict(inputs)
        if uses == "builtin.sleep":
            seconds = min(float(inputs.get("seconds", 1)), 60.0, timeout)
            time.sleep(max(0.0, seconds))
            return {"slept": seconds}
        if uses == "builtin.fail":
            raise OperationError(
                str(inputs.get("error", "Error")),
                str(inputs.get("message", "failed on purpose")),
                retryable=bool(inputs.get("retryable", False)),
            )
        raise OperationError(
            "NotConfigured",
            f"no connector is configured for {uses!r}; configure a store connector "
            "(STOREOPS_STORE) or script the result in a simulation",
        )


@dataclass
class Engine:
    """Starts, completes and drives SOP runs against one ledger."""

    ledger: Ledger
    sops_dir: Path
    templates: TemplateLibrary
    roster: Roster
    executor: Executor
    outbox: Outbox = field(default_factory=MemoryOutbox)
    clock: Clock = wall_clock
    inbox_url: str = "http://127.0.0.1:8765"
    expressions: Expressions = field(default_factory=Expressions)
    #: Wraps each action attempt (the run-sop flow makes it a Prefect task run). Gets the
    #: effect and a function that carries it out and returns a result or OperationError.
    around_action: Callable[[m.RunAction, Callable[[], Any]], Any] | None = None
    closed: bool = field(default=False, init=False, repr=False)
    #: Runs the last sweeps (`tick`, `recover`) could not drive, and why.
    stuck: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _definitions: dict[str, LoadedSop] = field(default_factory=dict)

    def close(self) -> None:
        """Close the ledger and whatever the executor and outbox hold open (HTTP pools)."""
        self.closed = True
        try:
            self.ledger.close()
        finally:
            for part in (self.executor, self.outbox):
                closer = getattr(part, "close", None)
                if closer is not None:
                    closer()

    # ------------------------------------------------------------ definitions

    def load_definition(self, sop_id: str) -> LoadedSop:
        path = self.sops_dir / f"{sop_id}.yaml"
        # an id, never a path: `../x` must not reach files outside the library
        if (
            not re.fullmatch(s.SOP_ID, sop_id)
            or sop_id in ("team", "monitors")
            or not path.is_file()
        ):
            known = sorted(
                p.stem for p in self.sops_dir.glob("*.yaml") if p.stem not in ("team", "monitors")
            )
            raise ConfigError(
                f"no SOP {sop_id!r} in {self.sops_dir}; known: {', '.join(known) or 'none'}"
            )
        checker = Checker(
            roster=self.roster,
            templates=self.templates,
            expressions=self.expressions,
            library=self.sops_dir,
        )
        loaded, problems = checker.load(path)
        if loaded is None:
            raise DefinitionError([d for d in problems if d.severity == "error"])
        return loaded

    def definition(self, def_hash: str) -> LoadedSop:
        found = self._definitions.get(def_hash)
        if found is None:
            found = from_bundle(self.ledger.get_definition(def_hash))
            self._definitions[def_hash] = found
        return found

    # ------------------------------------------------------------ runs

    def start(
        self,
        sop_id: str,
        params: Mapping[str, Any],
        *,
        actor: str,
        key: str | None = None,
        parent: tuple[str, str, int] | None = None,
        drive: bool = True,
    ) -> str:
        """Start a run; params are validated against the SOP. Returns the run id."""
        loaded = self.load_definition(sop_id)
        return self.start_loaded(loaded, params, actor=actor, key=key, parent=parent, drive=drive)

    def start_loaded(
        self,
        loaded: LoadedSop,
        params: Mapping[str, Any],
        *,
        actor: str,
        key: str | None = None,
        parent: tuple[str, str, int] | None = None,
        drive: bool = True,
        run_id: str | None = None,
    ) -> str:
        sop = loaded.spec
        values = coerce_params(sop, params)
        if key is None and sop.business_key:
            key = str(self.expressions.evaluate(sop.business_key, {"params": values}))
        self.ledger.put_definition(loaded.def_hash, sop.id, sop.version, loaded.bundle())
        self._definitions[loaded.def_hash] = loaded
        now = self.clock()
        fixed = run_id is not None
        for _attempt in range(5):
            rid = (
                run_id or f"{sop.id}-{us_to_iso(now)[:10].replace('-', '')}-{secrets.token_hex(4)}"
            )
            data: dict[str, Any] = {
                "run": rid,
                "sop": sop.id,
                "version": sop.version,
                "def_hash": loaded.def_hash,
                "params": values,
                "key": key,
                "actor": actor,
            }
            if parent is not None:
                data["parent"] = {"run": parent[0], "step": parent[1], "visit": parent[2]}
            record = RunRecord(
                run_id=rid,
                sop_id=sop.id,
                version=sop.version,
                def_hash=loaded.def_hash,
                business_key=key,
                status="running",
                started_at=us_to_iso(now),
                updated_at=us_to_iso(now),
                head_seq=0,
                head_hash="",
                parent_run=parent[0] if parent else None,
            )
            try:
                self.ledger.create_run(record, NewEvent("run.started", us_to_iso(now), data))
            except RunExistsError:
                if fixed:
                    raise
                continue  # a random id collided: draw another
            run_id = rid
            break
        else:  # pragma: no cover - five 32-bit collisions in a row
            raise RunError(f"could not find a free run id for {sop.id}")
        if drive:
            self.drive(run_id)
        else:
            self.ledger.set_wake(run_id, us_to_iso(now))  # due now: a runner will take it
        return run_id

    def raise_alert(
        self,
        key: str,
        *,
        sop: str,
        severity: str | None = None,
        summary: str | None = None,
        actor: str = "monitor",
        drive: bool = True,
    ) -> tuple[str, bool]:
        """Start the runbook for an alert, once: (run id, whether this call started it).

        One open incident per (runbook, alert key). Two alerts racing from two processes
        compute the same run id (key + count of earlier incidents), so the ledger lets
        exactly one create it; the other gets that run back. A repeat is recorded in the
        open run as `alert.repeated`.
        """
        loaded = self.load_definition(sop)
        for _ in range(10):
            existing = self.ledger.find_run(sop, key, open_only=True)
            if existing is not None:
                data = {"key": key, "severity": severity, "summary": summary, "actor": actor}
                self.ledger.append(
                    existing.run_id, [NewEvent("alert.repeated", us_to_iso(self.clock()), data)]
                )
                return existing.run_id, False
            earlier = [r for r in self.ledger.runs(sop_id=sop) if r.business_key == key]
            run_id = f"{sop}-{_slug(key)}-{_short_hash(sop, key)[:6]}-{len(earlier) + 1}"
            offered = {"alert_key": key, "severity": severity, "summary": summary}
            params = {k: v for k, v in offered.items() if k in loaded.spec.params and v is not None}
            try:
                self.start_loaded(loaded, params, actor=actor, key=key, drive=drive, run_id=run_id)
            except RunExistsError:
                continue  # another process started it a moment ago: look again
            return run_id, True
        raise RunError(f"could not start or find the {sop} run for alert {key!r}")

    def clear_alert(
        self,
        key: str,
        *,
        sop: str,
        summary: str | None = None,
        actor: str = "monitor",
        measured: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Record the all-clear for an alert in its open incident (`alert.cleared`).

        Returns the incident's run id, or None when no incident is open for the key (an
        all-clear with nothing to clear is not an error: probes repeat themselves)."""
        existing = self.ledger.find_run(sop, key, open_only=True)
        if existing is None:
            return None
        data = {"key": key, "summary": summary, "actor": actor, "measured": dict(measured or {})}
        self.ledger.append(
            existing.run_id, [NewEvent("alert.cleared", us_to_iso(self.clock()), _jsonable(data))]
        )
        return existing.run_id

    def load(self, run_id: str) -> tuple[m.Run, int, list[StoredEvent]]:
        """Replay a run from the ledger: (machine, head sequence, stored events)."""
        try:
            record = self.ledger.get_run(run_id)
        except LedgerRunNotFound as exc:
            raise RunNotFoundError(f"no run {run_id!r} in the ledger; see `storeops runs`") from exc
        loaded = self.definition(record.def_hash)
        stored = self.ledger.events(run_id)
        run = m.Run(loaded.spec, self.expressions, run_id)
        for event in stored:
            run.apply(m.Event(event.type, iso_to_us(event.at), event.data))
        return run, (stored[-1].seq if stored else 0), stored

    def _append(self, run_id: str, events: Sequence[m.Event], expected: int) -> int:
        if not events:
            return expected
        new = [NewEvent(e.type, us_to_iso(e.at), _jsonable(e.data)) for e in events]
        stored = self.ledger.append(run_id, new, expected_seq=expected)
        return stored[-1].seq

    def drive(self, run_id: str, *, max_rounds: int = 100_000) -> m.Run:
        """Advance a run until only people or future timers remain; carry out its effects.

        Safe to call from several processes: a lost append race re-reads and goes on. An
        action is recorded as attempted before it runs; one attempted by another driver
        within its timeout is left to that driver, and re-run with the same idempotency
        key once the timeout has passed without a result (the other driver crashed).
        """
        run, head, _stored = self.load(run_id)
        if run.status == "running":
            # Due at the end of a lease until this pass settles: a driver that dies mid-way
            # leaves the run due then, and nobody else drives it meanwhile.
            self.ledger.set_wake(run_id, us_to_iso(self.clock() + DRIVE_LEASE_US))
        for _ in range(max_rounds):
            now = self.clock()
            decided = run.advance(now)
            try:
                head = self._append(run_id, decided, head)
                effects = [e for e in run.effects() if self._is_ours(run, e, now)]
                if not effects:
                    if run.status == "running" and self._collect_calls(run_id, run, head):
                        raise _Reload
                    if run.status not in ("running", "new"):
                        self._finish_parent(run_id, run)
                    if run.status != "running" or self._has_calls(run):
                        self._cancel_orphans(run_id, run)
                    wake = run.wake_at() if run.status == "running" else None
                    self.ledger.set_wake(run_id, us_to_iso(wake) if wake is not None else None)
                    return run
                batch = [e for e in effects if isinstance(e, m.RunAction) and _batchable(e)]
                batch = batch[:MAX_BATCH]
                if len(batch) > 1:
                    head, appended = self._carry_out_batch(run_id, run, batch, head)
                else:
                    head, appended = self._carry_out(run_id, run, effects[0], head)
            except (ConcurrentAppendError, _Reload):
                run, head, _stored = self.load(run_id)
                continue
            for event in appended:
                run.apply(event)
        raise RunError(f"run {run_id} did not settle after {max_rounds} rounds")

    def _fact(self, run_id: str, events: Sequence[m.Event], head: int) -> int:
        """Append what already happened (a result, a delivery): never refused by a race.

        Facts carry their step and visit, so a fact that arrives after the run moved on
        is recorded and ignored by the machine. If someone else appended in between, the
        caller must re-read the run (raises _Reload after writing).
        """
        new = [NewEvent(e.type, us_to_iso(e.at), _jsonable(e.data)) for e in events]
        stored = self.ledger.append(run_id, new, expected_seq=None)
        if stored[0].seq != head + 1:
            raise _Reload
        return stored[-1].seq

    def _has_calls(self, run: m.Run) -> bool:
        return any(st.type == "call" for st in run.states.values())

    def _collect_calls(self, run_id: str, run: m.Run, head: int) -> bool:
        """Record `call.finished` for sub-runs that ended while nobody drove the parent
        (at most one: then the caller re-reads the run; a lost race means the same)."""
        for token in list(run.tokens.values()):
            if token.kind != "call" or token.child_run is None or token.outcome is not None:
                continue
            try:
                child = self.ledger.get_run(token.child_run)
            except LedgerRunNotFound:
                continue
            if child.status == "running":
                continue
            child_run, _head, _stored = self.load(token.child_run)
            data = _call_result(token.step, token.visit, token.child_run, child_run)
            finished = NewEvent("call.finished", us_to_iso(self.clock()), _jsonable(data))
            with contextlib.suppress(ConcurrentAppendError):  # someone else recorded it
                self.ledger.append(run_id, [finished], expected_seq=head)
            return True
        return False

    def _cancel_orphans(self, run_id: str, run: m.Run) -> None:
        """End sub-runs whose call was cancelled (a join won elsewhere) or whose parent ended."""
        for record in self.ledger.runs(status="running"):
            if record.parent_run != run_id:
                continue
            link = self.ledger.events(record.run_id)[0].data.get("parent") or {}
            token = run.token(str(link.get("step", "")))
            alive = (
                run.status == "running"
                and token is not None
                and token.visit == link.get("visit")
                and token.outcome is None
            )
            if alive:
                continue
            _child, head, _stored = self.load(record.run_id)
            why = f"its call {link.get('step')!r} in run {run_id} no longer waits for it"
            finished = {"status": "cancelled", "error": "Cancelled", "message": why}
            try:
                self._append(record.run_id, [m.Event("run.finished", self.clock(), finished)], head)
            except ConcurrentAppendError:
                continue
            self._cancel_orphans(record.run_id, self.load(record.run_id)[0])

    def tick(self, *, limit: int = 100) -> list[str]:
        """Drive every open run whose timers are due now (reminders, escalations, timeouts,
        waits, retries). Wake times live in the ledger, so this survives any restart."""
        due = self.ledger.due_runs(us_to_iso(self.clock()), limit)
        for run_id in due:
            self._drive_guarded(run_id)
        return due

    def _drive_guarded(self, run_id: str) -> None:
        """Drive one run of a sweep: a run that cannot be driven (a definition bug, a broken
        store) is logged and listed in `stuck`, and the sweep goes on with the others."""
        try:
            self.drive(run_id)
        except Exception as exc:  # one run must not stop the rest of the sweep
            self.stuck[run_id] = f"{type(exc).__name__}: {exc}"
            log.exception("run %s could not be driven", run_id)
        else:
            self.stuck.pop(run_id, None)

    def recover(self, *, drive: bool = True, limit: int | None = None) -> list[str]:
        """Sweep every open run from its events, not from the wake hints: a run with work
        due now (a decision, an assignment, an action whose driver died past its lease) is
        driven (or only listed, `drive=False`); every other run's wake time is rewritten
        from its events, repairing a lost or wrong hint. Returns the runs found due."""
        now = self.clock()
        found: list[str] = []
        for record in self.ledger.runs(status="running", limit=limit):
            try:
                run, _head, _stored = self.load(record.run_id)
                due = bool(run.advance(now)) or any(
                    self._is_ours(run, e, now) for e in run.effects()
                )
            except Exception as exc:  # cannot even be read back: listed, the sweep goes on
                self.stuck[record.run_id] = f"{type(exc).__name__}: {exc}"
                log.exception("run %s could not be loaded", record.run_id)
                continue
            if due:
                found.append(record.run_id)
                if drive:
                    self._drive_guarded(record.run_id)
            else:
                wake = run.wake_at()
                self.ledger.set_wake(record.run_id, us_to_iso(wake) if wake is not None else None)
        return found

    def next_wake(self) -> int | None:
        """The earliest moment any open run needs `tick` (µs), or None."""
        found = self.ledger.next_wake()
        return iso_to_us(found) if found is not None else None

    def _is_ours(self, run: m.Run, effect: m.Effect, now: int) -> bool:
        if isinstance(effect, m.RunAction):
            timeout = effect.timeout_us
        elif isinstance(effect, m.SendNotification):
            timeout = m.NOTIFY_TIMEOUT_US
        else:
            return True
        token = run.token(effect.step)
        if token is None or token.in_flight is None:
            return True
        return now >= token.in_flight_at + timeout + LEASE_GRACE_US

    def _carry_out(
        self, run_id: str, run: m.Run, effect: m.Effect, head: int
    ) -> tuple[int, list[m.Event]]:
        """Do one effect; return the new head and the events recorded (not yet applied)."""
        now = self.clock()
        ref = {"step": effect.step, "visit": effect.visit}
        events: list[m.Event] = []
        if isinstance(effect, m.AssignTask):
            candidates = self.roster.holders(effect.role)
            data = {**ref, "role": effect.role, "candidates": candidates}
            token = run.token(effect.step)
            due = token.due_at() if token is not None else None
            if due is not None:
                data["due_at"] = us_to_iso(due)
            events.append(m.Event("task.assigned", now, data))
            head = self._append(run_id, events, head)
            head = self._tell(candidates, run, effect.step, "assigned", effect.role, head)
        elif isinstance(effect, m.RunAction):
            first = _claim(effect, now)
            head = self._append(run_id, [first], head)  # the claim: one driver wins it
            run.apply(first)
            execute: Callable[[], Any] = lambda: self._execute(run, effect)  # noqa: E731
            result = self.around_action(effect, execute) if self.around_action else execute()
            outcome = _outcome(effect, result, self.clock())
            head = self._fact(run_id, [outcome], head)
            events.append(outcome)
        elif isinstance(effect, m.SendNotification):
            # The claim: of two drivers, only the one that records it first delivers.
            claim = m.Event("notification.sending", now, dict(ref))
            head = self._append(run_id, [claim], head)
            run.apply(claim)
            try:
                data = self._notify(run, effect)
                events.append(m.Event("notification.sent", now, {**ref, **data}))
            except (TemplateError, StoreopsError, OSError) as exc:
                failed = {**ref, "error": type(exc).__name__, "message": str(exc)[:500]}
                events.append(m.Event("notification.failed", now, failed))
            head = self._fact(run_id, events, head)
        elif isinstance(effect, m.StartCall):
            try:
                child = self._start_child(run_id, effect)
            except (StoreopsError, LedgerError) as exc:
                failed = {**ref, "child": None, "status": "failed", "message": str(exc)}
                events.append(m.Event("call.finished", now, failed))
                head = self._fact(run_id, events, head)
                return head, [m.Event(e.type, e.at, _jsonable(e.data)) for e in events]
            events.append(m.Event("call.started", now, {**ref, "child": child}))
            head = self._fact(run_id, events, head)
            self.drive(child)
            # a child that finished at once drove this run already (`_finish_parent`):
            # carry on from the ledger, not from this pass's copy
            raise _Reload
        elif isinstance(effect, m.Remind):
            people = self._people_for(run, effect.step)
            data = {**ref, "number": effect.number, "people": people}
            events.append(m.Event("task.reminded", now, data))
            head = self._append(run_id, events, head)
            head = self._tell(people, run, effect.step, "reminder", effect.role, head)
        elif isinstance(effect, m.Escalate):
            people = self.roster.holders(effect.to)
            data = {**ref, "to": effect.to, "people": people}
            events.append(m.Event("task.escalated", now, data))
            head = self._append(run_id, events, head)
            head = self._tell(people, run, effect.step, "escalated", effect.to, head)
        return head, [m.Event(e.type, e.at, _jsonable(e.data)) for e in events]

    def _carry_out_batch(
        self, run_id: str, run: m.Run, batch: Sequence[m.RunAction], head: int
    ) -> tuple[int, list[m.Event]]:
        """Carry out many ready actions of a `map` at once (an order wave): one append for
        the claims, the calls concurrently (`Executor.run_many`, bounded by the map's
        `max_concurrency`), one append for the results. Same records as one by one."""
        claims = [_claim(effect, self.clock()) for effect in batch]
        head = self._append(run_id, claims, head)
        for claim in claims:
            run.apply(claim)
        results = self._execute_many(run, batch)
        done = self.clock()
        outcomes = [_outcome(e, r, done) for e, r in zip(batch, results, strict=True)]
        head = self._fact(run_id, outcomes, head)
        return head, outcomes

    def _execute_many(self, run: m.Run, batch: Sequence[m.RunAction]) -> list[Any]:
        run_many = getattr(self.executor, "run_many", None)
        if run_many is None:
            return [self._execute(run, effect) for effect in batch]
        calls = [(e.uses, e.inputs, e.idempotency_key, e.timeout_us / 1e6) for e in batch]
        try:
            results = list(run_many(calls))
        except Exception as exc:  # an executor bug must not lose the attempt records
            failure = OperationError("Error", f"{type(exc).__name__}: {exc}", retryable=False)
            return [failure] * len(batch)
        return [
            r
            if not isinstance(r, BaseException) or isinstance(r, OperationError)
            else OperationError("Error", f"{type(r).__name__}: {r}", retryable=False)
            for r in results
        ]

    def _start_child(self, run_id: str, effect: m.StartCall) -> str:
        """Start (or find, after a crash) the sub-SOP run of a call; its id is derived."""
        child_id = f"{effect.sop}-{_short_hash(run_id, effect.step, effect.visit)}"
        try:
            self.ledger.get_run(child_id)
            return child_id
        except LedgerRunNotFound:
            pass
        loaded = self.load_definition(effect.sop)
        if effect.version is not None and loaded.spec.version != effect.version:
            raise RunError(
                f"run {run_id} step {effect.step!r} calls {effect.sop} v{effect.version}, but "
                f"the library has v{loaded.spec.version}"
            )
        return self.start_loaded(
            loaded,
            effect.params,
            actor="storeops",
            parent=(run_id, effect.step, effect.visit),
            drive=False,
            run_id=child_id,
        )

    def _execute(self, run: m.Run, effect: m.RunAction) -> Any:
        try:
            if effect.uses == "render.template":
                inputs = dict(effect.inputs)
                name = str(inputs.pop("template"))
                locale = str(inputs.pop("locale", "zh-CN"))
                rendered = self.render_template(run, name, locale, inputs)
                return {"text": rendered.text, "digest": rendered.digest, "locale": rendered.locale}
            scripted = getattr(self.executor, "scripts", None)
            if effect.uses in _LEDGER_OPERATIONS and not (scripted and scripted(effect.uses)):
                return self._ledger_operation(run, effect.uses, effect.inputs)
            return self.executor.run(
                effect.uses,
                effect.inputs,
                idempotency_key=effect.idempotency_key,
                timeout=effect.timeout_us / 1e6,
            )
        except OperationError as exc:
            return exc
        except (TemplateError, KeyError) as exc:
            return OperationError("Invalid", f"{type(exc).__name__}: {exc}", retryable=False)
        except Exception as exc:  # an executor bug must not lose the attempt record
            return OperationError("Error", f"{type(exc).__name__}: {exc}", retryable=False)

    def _ledger_operation(self, run: m.Run, uses: str, inputs: Mapping[str, Any]) -> Any:
        """Operations answered from the ledger itself (reviews, daily plans)."""
        from storeops.timeline import render

        if uses == "ledger.timeline":
            target = str(inputs.get("run") or run.run_id)
            try:
                record = self.ledger.get_run(target)
            except LedgerRunNotFound:
                raise OperationError("NotFound", f"ledger.timeline: no run {target!r}") from None
            sop = self.definition(record.def_hash).spec
            events = [
                {"type": e.type, "at": e.at, "data": e.data} for e in self.ledger.events(target)
            ]
            lines = render(events, sop, str(inputs.get("locale", "zh-CN")))
            return {
                "run": target,
                "sop": record.sop_id,
                "key": record.business_key,
                "status": record.status,
                "started_at": record.started_at,
                "events": len(events),
                "lines": lines,
                "text": "\n".join(lines),
            }
        # ledger.open_tasks: every open human step across running runs, with who may act
        tasks = self.tasks(role=inputs.get("role"))
        for task in tasks:
            task["people"] = sorted({p for r in task["roles"] for p in self.roster.holders(r)})
            raw = task["title"]  # both languages, so one digest can speak each reader's
            task["titles"] = {loc: s.localize(raw, loc) for loc in s.LOCALES}
            task["title"] = s.localize(raw, str(inputs.get("locale", "zh-CN")))
        by_person: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            for person in task["people"]:
                by_person.setdefault(person, []).append(task)
        overdue = [t for t in tasks if t["overdue"]]
        return {
            "tasks": tasks,
            "count": len(tasks),
            "overdue": overdue,
            "overdue_count": len(overdue),
            "by_person": by_person,
        }

    def _people_for(self, run: m.Run, step: str) -> list[str]:
        """Who a reminder for `step` goes to: the one who claimed it (or was handed it),
        else everyone who may still act (holders of its roles who have not decided yet)."""
        token = run.token(step)
        if token is None:
            return []
        state = run.states.get(token.state)
        several = isinstance(state, s.ApprovalState) and state.approvals > 1
        if token.claimed_by is not None and not several and not self._claim_lapsed(run, step):
            return [token.claimed_by]
        decided = {*token.approvals, *token.rejections}
        people: list[str] = []
        for role in token.roles:
            people += [p for p in self.roster.holders(role) if p not in people and p not in decided]
        return people

    def _title(self, run: m.Run, token: m.Token, locale: str | None = None) -> Any:
        """A human step's title followed by what this run's step is about (`about:`, its
        `{{ }}` filled from the run): one locale's text, or every locale's when `locale` is
        None. An `about` the run cannot fill yet is left out."""
        state = run.states[token.state]
        title, about = getattr(state, "title", None), getattr(state, "about", None)
        if title is None:
            return None
        locales = [locale] if locale is not None else list(s.LOCALES)
        namespace = run.scopes[token.scope].namespace
        texts: dict[str, str] = {}
        for lang in locales:
            text = s.localize(title, lang)
            if about is not None:
                try:
                    extra = str(self.expressions.render_value(s.localize(about, lang), namespace))
                except StoreopsError:
                    extra = ""
                if extra.strip():
                    text = f"{text} · {extra.strip()}"
            texts[lang] = text
        if locale is not None:
            return texts[locale]
        if about is None and not isinstance(title, dict):
            return title
        return texts

    def _claim_lapsed(self, run: m.Run, step: str) -> bool:
        """Whether `step` is claimed by someone who may no longer act on it (made inactive,
        moved to another role): their claim then holds nobody back, and reminders go to
        everyone who may act."""
        token = run.token(step)
        claimant = token.claimed_by if token is not None else None
        if token is None or claimant is None:
            return False
        return not set(self.roster.roles_of(claimant)) & set(token.roles)

    def _channel(self, person: str) -> str:
        """The person's first channel (roster order) the outbox can reach, else the inbox."""
        entry = self.roster.people.get(person)
        for channel in entry.channels if entry is not None else ():
            if self.outbox.can_reach(channel):
                return channel
        return "inbox"

    def _deliver(
        self, person: str, subject: str, text: str, link: str, sent: dict[str, Any]
    ) -> None:
        """Deliver to one person; record the channel used, or the failure, in `sent`."""
        channel = self._channel(person)
        try:
            self.outbox.deliver(person, channel, subject, text, link)
            sent.setdefault("delivered", {})[person] = channel
        except (StoreopsError, OSError) as exc:  # one person's channel must not stop the rest
            sent.setdefault("failed", {})[person] = f"{channel}: {str(exc)[:300]}"

    def _tell(
        self, people: Sequence[str], run: m.Run, step: str, why: str, role: str, head: int
    ) -> int:
        """Tell people about a task (assigned, reminder, escalated), then record who was
        reached by which channel as a fact (`notice.sent`). At most once: a crash between
        the task event and this loses the notice, never the task (the inbox shows it)."""
        token = run.token(step)
        sent: dict[str, Any] = {"step": step, "visit": token.visit if token else 0, "why": why}
        for person in people:
            locale = self.roster.locale_of(person)
            title = (self._title(run, token, locale) if token else None) or step
            subject = _subject(why, locale, run.sop, title)
            link = f"{self.inbox_url}/runs/{run.run_id}/steps/{step}"
            self._deliver(person, subject, subject, link, sent)
        if not people:
            return head
        return self._fact(run.run_id, [m.Event("notice.sent", self.clock(), sent)], head)

    def _recipient(self, person: str) -> dict[str, Any]:
        """Who a notify template is rendered for (`recipient` in its context)."""
        entry = self.roster.people[person]
        return {"id": person, "name": entry.name, "locale": entry.locale, "roles": entry.roles}

    def _notify(self, run: m.Run, effect: m.SendNotification) -> dict[str, Any]:
        people: list[str] = []
        channels: list[str] = []
        for target in effect.to:
            if target.startswith("channel:"):
                channels.append(target.removeprefix("channel:"))
            else:
                people += [p for p in self.roster.holders(target) if p not in people]
        digests: dict[str, str] = {}
        template_digest = None
        sent: dict[str, Any] = {}
        for person in people:
            locale = self.roster.locale_of(person)
            if effect.template:
                context = {**effect.context, "recipient": self._recipient(person)}
                rendered = self.render_template(run, effect.template, locale, context)
                text, template_digest = rendered.text, rendered.source_digest
            else:
                context = {**effect.context, "recipient": self._recipient(person)}
                text = str(
                    self.expressions.render_value(s.localize(effect.message, locale), context)
                )
            digests[person] = hashlib.sha256(text.encode()).hexdigest()
            subject = text.strip().splitlines()[0][:120] if text.strip() else run.sop.id
            self._deliver(person, subject, text, f"{self.inbox_url}/runs/{run.run_id}", sent)
        if people and not sent.get("delivered"):
            reasons = "; ".join(f"{p}: {why}" for p, why in sent["failed"].items())
            raise OperationError("Unavailable", f"no one could be reached: {reasons}")
        data: dict[str, Any] = {"to": list(effect.to), "people": people, "digests": digests}
        data.update(sent)
        if channels:
            data["channels"] = channels
        if effect.template:
            data["template"] = effect.template
            data["template_digest"] = template_digest
        return data

    def render_template(
        self, run: m.Run, name: str, locale: str, context: dict[str, Any]
    ) -> Rendered:
        """Render a template as the run pinned it when it started."""
        pinned = self.definition(run.def_hash).templates.get(name) if run.def_hash else None
        if pinned:
            return self.templates.render_pinned(pinned, name, locale, context)
        return self.templates.render(name, locale, context)

    def describe_task(self, run_id: str, step: str, locale: str) -> dict[str, Any]:
        """Everything a person needs to do a step: instructions, checklist, form, evidence."""
        run, _head, _stored = self.load(run_id)
        token = run.token(step)
        if token is None or token.kind not in ("task", "approval"):
            open_steps = ", ".join(t.step for t in run.active_tasks()) or "none"
            raise StepNotActiveError(
                f"step {step!r} is not waiting for anyone in run {run_id}; open steps: {open_steps}"
            )
        state = run.states[token.state]
        context = dict(run.scopes[token.scope].namespace)
        instructions = ""
        if isinstance(state.instructions, s.Template):
            name = state.instructions.template
            instructions = self.render_template(run, name, locale, context).text
        elif state.instructions is not None:  # inline text may use {{ }} like a message
            text = s.localize(state.instructions, locale)
            try:
                instructions = str(self.expressions.render_value(text, context))
            except StoreopsError:  # a value the run lacks yet: show the text as written
                instructions = text
        due = token.due_at()
        return {
            "run": run_id,
            "step": step,
            "type": token.kind,
            "title": self._title(run, token, locale),
            "roles": list(token.roles),
            "candidates": list(token.candidates),
            "assigned_at": us_to_iso(token.entered_at),
            "due_at": us_to_iso(due) if due else None,
            "instructions": instructions,
            "checklist": [
                {"number": i, "item": s.localize(c.item, locale), "required": c.required}
                for i, c in enumerate(state.checklist, start=1)
            ],
            "fields": {
                name: {
                    "type": f.type,
                    "title": s.localize(f.title, locale) or name,
                    "required": f.required,
                    "min": f.min,
                    "max": f.max,
                    "values": f.values,
                }
                for name, f in state.fields.items()
            },
            "evidence": [
                {
                    "name": e.name,
                    "title": s.localize(e.title, locale) or e.name,
                    "required": e.required,
                    "min_count": e.min_count,
                }
                for e in state.evidence
            ],
            "approvals": {"needed": getattr(state, "approvals", 1), "given": list(token.approvals)},
        }

    def _finish_parent(self, run_id: str, run: m.Run) -> None:
        record = self.ledger.get_run(run_id)
        if record.parent_run is None:
            return
        first = self.ledger.events(run_id)[0].data
        link = first.get("parent") or {}
        data = _call_result(str(link.get("step", "")), int(link.get("visit", 0)), run_id, run)
        for _ in range(100):  # once: against the parent as read, re-read after a lost race
            parent, head, _stored = self.load(record.parent_run)
            token = parent.token(str(link.get("step", "")))
            if token is None or token.visit != link.get("visit") or token.outcome is not None:
                return  # recorded already (by its driver's `_collect_calls`), or moved on
            finished = NewEvent("call.finished", us_to_iso(self.clock()), _jsonable(data))
            try:
                self.ledger.append(record.parent_run, [finished], expected_seq=head)
            except ConcurrentAppendError:
                continue
            break
        self.drive(record.parent_run)

    # ------------------------------------------------------------ people

    def complete(
        self,
        run_id: str,
        step: str,
        *,
        actor: str,
        fields: Mapping[str, Any] | None = None,
        evidence: Mapping[str, Sequence[str]] | None = None,
        checklist: Mapping[int, str] | None = None,
        note: str | None = None,
        reject: bool = False,
        reason: str | None = None,
        drive: bool = True,
    ) -> m.Run:
        """The one completion path (CLI, inbox, simulator): check, record, then drive.

        Exactly one completion of a step is recorded however many people or processes
        try at once; the others get AlreadyCompletedError naming who won and when.
        Refusals (wrong role, four-eyes, already done) are recorded as task.refused.
        """
        if actor not in self.roster.people:
            raise NotAllowedError(
                f"{actor!r} is not in the roster; known people: {', '.join(self.roster.people)}"
            )
        for _ in range(100):
            run, head, _stored = self.load(run_id)
            now = self.clock()
            decided = run.advance(now)
            try:
                head = self._append(run_id, decided, head)
            except ConcurrentAppendError:
                continue
            refusal = run.check_completion(
                step,
                actor,
                self.roster.roles_of(actor),
                reject=reject,
                ignore_claim=self._claim_lapsed(run, step),
            )
            if refusal is not None:
                self._refuse(run_id, step, actor, refusal, head)
                raise _REFUSALS[refusal.kind](refusal.message)
            token = run.token(step)
            assert token is not None
            state = run.states[token.state]
            data: dict[str, Any] = {
                "step": step,
                "visit": token.visit,
                "actor": actor,
                "role": _acting_role(token.roles, self.roster.roles_of(actor)),
            }
            if note:
                data["note"] = note
            if reject:
                if not reason or not reason.strip():
                    raise InvalidInputError(f"rejecting step {step!r} needs a reason (--reason)")
                data["reason"] = reason.strip()
                event = m.Event("task.rejected", now, data)
            else:
                data["fields"] = validate_fields(state, fields or {}, step)
                data["checklist"] = validate_checklist(state, checklist or {}, step)
                data["evidence"] = validate_evidence(state, evidence or {}, step)
                event = m.Event("task.completed", now, data)
            try:
                self._append(run_id, [event], head)
            except ConcurrentAppendError:
                continue
            # due now, even if no wake arrives or this process dies before it drives
            self.ledger.set_wake(run_id, us_to_iso(now))
            if not drive:  # someone else (the run-sop flow) carries the run forward
                run.apply(event)
                return run
            return self.drive(run_id)
        raise RunError(f"run {run_id}: too much contention completing {step!r}; try again")

    def claim(self, run_id: str, step: str, *, actor: str, to: str | None = None) -> m.Run:
        """`actor` takes `step` (only they may complete it then), or — a lead, with `to` —
        hands it to another holder of its role. Recorded as `task.claimed` (with `by` for a
        reassignment); refusals are recorded like a completion's."""
        person = to or actor
        for who in (actor, person):
            if who not in self.roster.people:
                raise NotAllowedError(
                    f"{who!r} is not in the roster; known people: {', '.join(self.roster.people)}"
                )
        for _ in range(100):
            run, head, _stored = self.load(run_id)
            token = run.token(step)
            if to is not None:
                if not any(_is_lead(r) for r in self.roster.roles_of(actor)):
                    not_lead = m.Refusal("not_allowed", f"only a lead may reassign {step!r}")
                    self._refuse(run_id, step, actor, not_lead, head)
                    raise NotAllowedError(not_lead.message)
                if token is not None and token.claimed_by == person:
                    return run
            refusal = run.check_completion(
                step,
                person,
                self.roster.roles_of(person),
                ignore_claim=to is not None or self._claim_lapsed(run, step),
            )
            if refusal is not None:
                self._refuse(run_id, step, actor, refusal, head)
                raise _REFUSALS[refusal.kind](refusal.message)
            assert token is not None
            if to is None and token.claimed_by == actor:
                return run  # already theirs
            data: dict[str, Any] = {"step": step, "visit": token.visit, "actor": person}
            if to is not None:
                data["by"] = actor
            event = m.Event("task.claimed", self.clock(), data)
            try:
                self._append(run_id, [event], head)
            except ConcurrentAppendError:
                continue
            run.apply(event)
            return run
        raise RunError(f"run {run_id}: too much contention claiming {step!r}; try again")

    def _refuse(self, run_id: str, step: str, actor: str, refusal: m.Refusal, head: int) -> None:
        data = {"step": step, "actor": actor, "reason": refusal.kind, "message": refusal.message}
        try:
            self._append(run_id, [m.Event("task.refused", self.clock(), data)], head)
        except ConcurrentAppendError:
            pass  # the refusal stands; losing its record to a race is reported below
        except Exception:  # pragma: no cover - never hide the refusal itself
            pass

    def tasks(self, *, person: str | None = None, role: str | None = None) -> list[dict[str, Any]]:
        """Open human steps across running runs, overdue first, then by due time."""
        found: list[dict[str, Any]] = []
        roles = set(self.roster.roles_of(person)) if person else None
        for record in self.ledger.runs(status="running"):
            run, _head, _stored = self.load(record.run_id)
            for token in run.active_tasks():
                if roles is not None and not roles & set(token.roles):
                    continue
                if role is not None and role not in token.roles:
                    continue
                due = token.due_at()
                found.append(
                    {
                        "run": record.run_id,
                        "sop": record.sop_id,
                        "key": record.business_key,
                        "step": token.step,
                        "state": token.state,
                        "type": token.kind,
                        "roles": list(token.roles),
                        "title": self._title(run, token),
                        "assigned_at": us_to_iso(token.entered_at),
                        "due_at": us_to_iso(due) if due else None,
                        "overdue": token.overdue or (due is not None and due < self.clock()),
                        "claimed_by": token.claimed_by,
                    }
                )
        found.sort(key=lambda t: (not t["overdue"], t["due_at"] or "9999", t["run"]))
        return found


#: Operations the Engine answers from its own ledger, not through the executor.
_LEDGER_OPERATIONS = frozenset({"ledger.timeline", "ledger.open_tasks"})

#: The most actions one batch claims and runs at once (a map's own bound is usually lower).
MAX_BATCH = 500


def _batchable(effect: m.RunAction) -> bool:
    """Actions of map items run in batches; other actions one by one (as Prefect tasks)."""
    return "[" in effect.step and effect.uses != "render.template"


def _claim(effect: m.RunAction, now: int) -> m.Event:
    """`action.attempted`: recorded before the call; the driver that records it runs it."""
    return m.Event(
        "action.attempted",
        now,
        {
            "step": effect.step,
            "visit": effect.visit,
            "attempt": effect.attempt,
            "uses": effect.uses,
            "inputs": _jsonable(effect.inputs),
            "idempotency_key": effect.idempotency_key,
        },
    )


def _outcome(effect: m.RunAction, result: Any, at: int) -> m.Event:
    base = {
        "step": effect.step,
        "visit": effect.visit,
        "attempt": effect.attempt,
        "idempotency_key": effect.idempotency_key,
    }
    if isinstance(result, OperationError):
        failed = {
            **base,
            "error": result.error,
            "message": str(result),
            "retryable": result.retryable,
        }
        if result.retry_after:
            failed["retry_after_us"] = int(result.retry_after * 1e6)
        return m.Event("action.failed", at, failed)
    return m.Event("action.succeeded", at, {**base, "result": _jsonable(result)})


class _Reload(Exception):
    """The in-memory run is behind the ledger; re-read it."""


def _call_result(step: str, visit: int, child_id: str, child: m.Run) -> dict[str, Any]:
    data: dict[str, Any] = {
        "step": step,
        "visit": visit,
        "child": child_id,
        "status": child.status,
        "output": child.output,
    }
    if child.error:
        data["message"] = str(child.error.get("message") or child.error.get("error"))
    return data


_REFUSALS: dict[str, type[RunError]] = {
    "not_active": StepNotActiveError,
    "already": AlreadyCompletedError,
    "not_allowed": NotAllowedError,
    "invalid": InvalidInputError,
}


def _is_lead(role: str) -> bool:
    """Leads may reassign steps: `lead`, or a role ending in `_lead` (ops_lead, cs_lead)."""
    return role == "lead" or role.endswith("_lead")


def _acting_role(step_roles: Sequence[str], person_roles: Sequence[str]) -> str:
    for role in step_roles:
        if role in person_roles:
            return role
    return step_roles[0] if step_roles else ""


_SUBJECTS = {
    "assigned": {"en": "New task: {title} ({sop})", "zh-CN": "新任务：{title}（{sop}）"},
    "reminder": {"en": "Reminder: {title} ({sop})", "zh-CN": "提醒：{title}（{sop}）"},
    "escalated": {"en": "Escalated: {title} ({sop})", "zh-CN": "已升级：{title}（{sop}）"},
}


def _subject(why: str, locale: str, sop: s.SopSpec, title: str) -> str:
    form = _SUBJECTS[why].get(locale, _SUBJECTS[why]["en"])
    return form.format(title=title, sop=s.localize(sop.title, locale))


# ---------------------------------------------------------------- typed values


def coerce_value(spec: s.FieldSpec, raw: Any, name: str) -> Any:
    """Turn CLI text or YAML values into the field's type; InvalidInputError otherwise."""
    kind = spec.type
    try:
        if kind == "string":
            value: Any = str(raw)
        elif kind == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            value = int(raw)
        elif kind == "number":
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
            if not math.isfinite(value):
                raise InvalidInputError(f"{name}: expected a finite number, found {raw!r}")
        elif kind == "bool":
            if isinstance(raw, bool):
                value = raw
            elif str(raw).lower() in ("true", "yes", "1", "是"):
                value = True
            elif str(raw).lower() in ("false", "no", "0", "否"):
                value = False
            else:
                raise ValueError
        elif kind == "date":
            value = (
                raw.isoformat()
                if isinstance(raw, date)
                else date.fromisoformat(str(raw)).isoformat()
            )
        elif kind == "datetime":
            text = raw.isoformat() if isinstance(raw, datetime) else str(raw)
            datetime.fromisoformat(text.replace("Z", "+00:00"))
            value = text
        elif kind == "duration":
            value = parse_duration(raw)
        elif kind == "list":
            value = (
                list(raw)
                if isinstance(raw, list | tuple)
                else [v.strip() for v in str(raw).split(",") if v.strip()]
            )
        else:  # enum
            value = str(raw)
            if spec.values and value not in spec.values:
                raise InvalidInputError(f"{name}: {value!r} is not one of {', '.join(spec.values)}")
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{name}: expected a {kind}, found {raw!r}") from exc
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.min is not None and value < spec.min:
            raise InvalidInputError(f"{name}: {value} is below the minimum {spec.min:g}")
        if spec.max is not None and value > spec.max:
            raise InvalidInputError(f"{name}: {value} is above the maximum {spec.max:g}")
    return value


def _coerce_all(
    specs: Mapping[str, s.FieldSpec], given: Mapping[str, Any], what: str
) -> dict[str, Any]:
    unknown = [k for k in given if k not in specs]
    if unknown:
        raise InvalidInputError(
            f"{what} has no field {unknown[0]!r}; fields: {', '.join(specs) or 'none'}"
        )
    values: dict[str, Any] = {}
    missing = []
    for name, spec in specs.items():
        if name in given and given[name] not in (None, ""):
            values[name] = coerce_value(spec, given[name], name)
        elif spec.default is not None:
            values[name] = coerce_value(spec, spec.default, name)
        elif spec.required:
            missing.append(name)
    if missing:
        raise InvalidInputError(f"{what} needs {', '.join(missing)}")
    return values


def coerce_params(sop: s.SopSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    return _coerce_all(sop.params, given, f"SOP {sop.id} v{sop.version}")


def validate_fields(state: Any, given: Mapping[str, Any], step: str) -> dict[str, Any]:
    return _coerce_all(state.fields, given, f"step {step!r}")


def validate_checklist(state: Any, given: Mapping[int, str], step: str) -> dict[str, str]:
    """Checklist answers by 1-based item number: 'done' or 'n/a: reason'; 0 ticks all."""
    result: dict[str, str] = {}
    items = state.checklist
    unknown = [n for n in given if n != 0 and not 1 <= n <= len(items)]
    if unknown:
        raise InvalidInputError(
            f"step {step!r} has {len(items)} checklist item(s); there is no item {unknown[0]}"
        )
    for number, item in enumerate(items, start=1):
        answer = given.get(number, given.get(0))
        if answer is None:
            if item.required:
                raise InvalidInputError(
                    f"step {step!r}: checklist item {number} "
                    f"({s.localize(item.item, 'en')!r}) is not ticked"
                )
            continue
        answer = answer.strip()
        if answer.startswith("n/a"):
            if not answer[3:].strip(" :"):
                raise InvalidInputError(
                    f"step {step!r}: checklist item {number} n/a needs a reason"
                )
        elif answer != "done":
            raise InvalidInputError(
                f"step {step!r}: checklist item {number} is answered {answer!r}; "
                "answer done, or n/a: <reason>"
            )
        result[str(number)] = answer
    return result


def validate_evidence(
    state: Any, given: Mapping[str, Sequence[str]], step: str
) -> dict[str, list[str]]:
    """Evidence digests by name; required evidence must be attached."""
    names = {e.name: e for e in state.evidence}
    unknown = [k for k in given if k not in names]
    if unknown:
        raise InvalidInputError(
            f"step {step!r} asks for no evidence {unknown[0]!r}; "
            f"it asks for: {', '.join(names) or 'none'}"
        )
    for name, spec in names.items():
        count = len(given.get(name, ()))
        if spec.required and count < max(spec.min_count, 1):
            raise InvalidInputError(
                f"step {step!r} needs evidence {name!r} "
                f"({max(spec.min_count, 1)} file(s), {count} given)"
            )
    return {k: list(v) for k, v in given.items()}


def _slug(text: str) -> str:
    cleaned = "".join(c if c.isascii() and c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in cleaned.split("-") if part)[:40] or "alert"


def _short_hash(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:10]


def _jsonable(value: Any) -> Any:
    """`value` as JSON types (dates as ISO text, tuples as lists, other objects as text).

    On the hot path of every append (an order wave writes tens of thousands of events):
    exact type checks first, the general isinstance checks only for the rest."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): _jsonable(v) for k, v in value.items()}
    if kind is list:
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)
