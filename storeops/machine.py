"""The SOP machine: a pure function of (definition, event history, now) -> (state, commands).

Pure core: standard library and the spec models only; no I/O, no clock reads, no
randomness (retry jitter is derived from a hash of the run, step and attempt), no Prefect.
Expressions are evaluated through an injected `Evaluator`.

Shape: `apply(event)` folds one ledger event into the run mechanically; `advance(now)`
makes every decision that is due (transitions, joins, timeouts) and returns them as
events, already applied; `effects()` lists the outside work outstanding (assign a task,
run an action, send a notification, start a sub-SOP, remind, escalate). Effects are
level-triggered: the same list comes back until the driver records their results, so a
crashed driver that replays the ledger re-does exactly what is unfinished, with the same
idempotency keys. Times are integer microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from storeops import spec as s
from storeops.durations import iso_to_us, parse_duration, seconds_to_us, us_to_iso
from storeops.errors import ExpressionError

ROOT = ""
#: How long past an action's timeout a result may still arrive from the driver that
#: attempted it; after that another driver re-runs it (same idempotency key).
LEASE_GRACE_US = 5_000_000
#: How long a claimed notification may take before another driver sends it again.
NOTIFY_TIMEOUT_US = 60_000_000
_HUMAN = frozenset({"task", "approval"})
#: Where a caught error is kept for the catch's target (per branch, see `_on_vars_saved`).
LAST_ERROR = "last_error"
#: A human step's spans and the timers they arm.
_HUMAN_TIMERS = (
    ("remind", "remind"),
    ("escalate", "escalate"),
    ("due", "overdue"),
    ("timeout", "timeout"),
)
_INDEX = re.compile(r"\[(\d+)\]")


class Evaluator(Protocol):
    """Evaluates sandboxed expressions; the machine never compiles them itself."""

    def evaluate(self, source: str, namespace: Mapping[str, Any]) -> Any: ...

    def render_value(self, value: Any, namespace: Mapping[str, Any]) -> Any: ...


@dataclass(slots=True)
class Event:
    """One ledger record as the machine sees it: `at` in integer microseconds."""

    type: str
    at: int
    data: dict[str, Any]


# ---------------------------------------------------------------- effects (commands)


@dataclass(slots=True)
class AssignTask:
    id: str
    step: str
    visit: int
    state: str
    role: str


@dataclass(slots=True)
class RunAction:
    id: str
    step: str
    visit: int
    attempt: int
    uses: str
    inputs: dict[str, Any]
    timeout_us: int
    idempotency_key: str


@dataclass(slots=True)
class SendNotification:
    id: str
    step: str
    visit: int
    to: tuple[str, ...]
    template: str | None
    message: Any
    context: dict[str, Any]


@dataclass(slots=True)
class StartCall:
    id: str
    step: str
    visit: int
    sop: str
    version: int | None
    params: dict[str, Any]


@dataclass(slots=True)
class Remind:
    id: str
    step: str
    visit: int
    number: int
    role: str


@dataclass(slots=True)
class Escalate:
    id: str
    step: str
    visit: int
    to: str


Effect = AssignTask | RunAction | SendNotification | StartCall | Remind | Escalate


# ---------------------------------------------------------------- run state


class Token:
    """The one current state of a scope (a scope is sequential).

    A plain class with class-level defaults: entering a state is the hot path, and only
    the attributes a state type uses are ever set on an instance.
    """

    # human steps
    assigned = False
    candidates: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    approvals: dict[str, int] = {}  # noqa: RUF012 - replaced per instance before any write
    rejections: dict[str, str] = {}  # noqa: RUF012 - replaced per instance before any write
    reminders = 0
    escalated = False
    overdue = False
    claimed_by: str | None = None
    # this visit's remind/escalate/due/timeout spans in µs (expressions evaluated on entry)
    spans: dict[str, int] = {}  # noqa: RUF012 - replaced per instance before any write
    span_error: str | None = None
    next_remind: int | None = None
    # actions, notifications, calls
    attempt = 0
    in_flight: dict[str, Any] | None = None
    in_flight_at = 0
    retry_at: int | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    child_run: str | None = None
    # waits
    until: int | None = None
    # effect ids outstanding for this token (dropped when it leaves)
    effects: list[str] | None = None
    action_effect: str | None = None

    def due_at(self) -> int | None:
        """When this visit of a human step is due (µs), if it has a `due`."""
        span = self.spans.get("due")
        return None if span is None else self.entered_at + span

    def __init__(
        self, scope: str, state: str, visit: int, step: str, entered_at: int, kind: str
    ) -> None:
        self.scope = scope
        self.state = state
        self.visit = visit
        self.step = step
        self.entered_at = entered_at
        self.kind = kind
        # a decided outcome waiting for its transition: a field name such as "next"
        self.outcome: str | None = None

    def __repr__(self) -> str:
        return f"Token({self.step!r}, visit={self.visit}, kind={self.kind!r})"


@dataclass(slots=True)
class Scope:
    key: str
    parent: str | None
    owner: str | None  # the parallel/map state in the parent scope
    branch: str | None = None
    index: int | None = None
    namespace: MutableMapping[str, Any] = field(default_factory=dict)
    local_vars: dict[str, Any] = field(default_factory=dict)
    status: str = "active"  # active | succeeded | failed | cancelled
    error: dict[str, Any] | None = None


@dataclass(slots=True)
class Container:
    """Book-keeping of a parallel or map state while its children run."""

    kind: str
    visit: int = 0
    children: list[str] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    started: int = 0
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a person may not complete a step; `kind` picks the error class."""

    kind: str  # not_active | already | not_allowed | invalid
    message: str


class Run:
    """One SOP run, rebuilt from its events. See the module docstring for the contract."""

    def __init__(self, sop: s.SopSpec, evaluator: Evaluator, run_id: str = "run") -> None:
        self.sop = sop
        self.evaluator = evaluator
        self.run_id = run_id
        self.states: dict[str, Any] = s.all_states(sop)
        self._timeout_us = {
            sid: seconds_to_us(st.timeout)
            for sid, st in self.states.items()
            if isinstance(st, s.ActionState)
        }
        self.status = "new"
        self.started_at = 0
        self.finished_at: int | None = None
        self.params: dict[str, Any] = {}
        self.vars: dict[str, Any] = {}
        self.steps: dict[str, dict[str, Any]] = {}
        self.business_key: str | None = None
        self.def_hash = ""
        self.output: dict[str, Any] = {}
        self.error: dict[str, Any] | None = None
        self.tokens: dict[str, Token] = {}
        self.scopes: dict[str, Scope] = {}
        self.containers: dict[str, Container] = {}
        #: scope key -> keys of the containers (parallel/map states) opened inside it
        self.inner: dict[str, list[str]] = {}
        self.by_step: dict[str, str] = {}
        self.visits: dict[tuple[str, str], int] = {}
        self.agenda: dict[str, None] = {}
        self.outstanding: dict[str, Effect] = {}
        self.timers: list[tuple[int, int, str, str, int, str]] = []
        self._timer_seq = 0
        self.events_applied = 0
        self.namespace: dict[str, Any] = {}
        self.root_entered = False
        self._deciders: dict[str, Callable[[Token, Any, int, list[Event]], None]] = {
            "task": self._decide_human,
            "approval": self._decide_human,
            "action": self._decide_action,
            "choice": self._decide_choice,
            "succeed": self._decide_end,
            "fail": self._decide_end,
            "parallel": self._decide_parallel,
            "map": self._decide_map,
            "wait": self._decide_wait,
            "notify": self._decide_notify,
            "call": self._decide_call,
        }

    # ------------------------------------------------------------ fold

    def apply(self, event: Event) -> None:
        """Fold one recorded event. Mechanical: decisions live in `advance`."""
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event)
        self.events_applied += 1

    def replay(self, events: Iterable[Event]) -> Run:
        for event in events:
            self.apply(event)
        return self

    def _on_run_started(self, event: Event) -> None:
        data = event.data
        self.status = "running"
        self.started_at = event.at
        self.params = dict(data.get("params", {}))
        self.business_key = data.get("key")
        self.def_hash = str(data.get("def_hash", ""))
        self.run_id = data.get("run", self.run_id)
        self.namespace = {
            "params": self.params,
            "vars": self.vars,
            "steps": self.steps,
            "run": {
                "id": self.run_id,
                "key": self.business_key,
                "sop": self.sop.id,
                "started_at": us_to_iso(event.at),  # recorded, so replays agree
            },
        }
        self.scopes[ROOT] = Scope(ROOT, None, None, namespace=self.namespace)
        self.root_entered = False

    def _on_state_entered(self, event: Event) -> None:
        # The hottest path of the engine: locals and inlined helpers on purpose.
        data = event.data
        scope_key: str = data["scope"]
        state_id: str = data["state"]
        if scope_key not in self.scopes:
            self._open_scope(scope_key, data)
        if not scope_key:
            self.root_entered = True
        tokens = self.tokens
        by_step = self.by_step
        old = tokens.get(scope_key)
        if old is not None:  # leave the previous state of this scope
            by_step.pop(old.step, None)
            if old.effects:
                outstanding = self.outstanding
                for effect_id in old.effects:
                    outstanding.pop(effect_id, None)
        key = (scope_key, state_id)
        visits = self.visits
        visit = visits.get(key, 0) + 1
        visits[key] = visit
        state = self.states[state_id]
        step = state_id if "[" not in scope_key else _step_key(scope_key, state_id)
        token = Token(scope_key, state_id, visit, step, event.at, state.type)
        tokens[scope_key] = token
        by_step[step] = scope_key
        if token.kind in _HUMAN:
            token.roles = (state.role,)
            token.approvals = {}
            token.rejections = {}
            self._arm_human(token, state)
        self.agenda[scope_key] = None

    def _open_scope(self, key: str, data: Mapping[str, Any]) -> Scope:
        parent_key: str = data["parent"]
        parent = self.scopes[parent_key]
        owner: str = data["owner"]
        scope = Scope(key, parent_key, owner, branch=data.get("branch"), index=data.get("index"))
        container = self.containers[parent_key + "/" + owner]
        container.children.append(key)
        container.active += 1
        if container.kind == "map":
            container.started += 1
            index: int = data["index"]
            owner_state = self.states[owner]
            local = scope.local_vars
            scope.namespace = ChainMap(
                {
                    owner_state.item_as: container.items[index],
                    "index": index,
                    "vars": ChainMap(local, self.vars),
                },
                parent.namespace,
            )
        else:  # a parallel branch: the run's vars, but its own `last_error`
            scope.namespace = ChainMap(
                {"vars": ChainMap(scope.local_vars, parent.namespace["vars"])}, parent.namespace
            )
        self.scopes[key] = scope
        return scope

    def _leave(self, token: Token) -> None:
        self.by_step.pop(token.step, None)
        if token.effects:
            outstanding = self.outstanding
            for effect_id in token.effects:
                outstanding.pop(effect_id, None)

    def _add_effect(self, token: Token, effect: Effect) -> None:
        self.outstanding[effect.id] = effect
        if token.effects is None:
            token.effects = [effect.id]
        else:
            token.effects.append(effect.id)

    def _arm_human(self, token: Token, state: Any) -> None:
        at = token.entered_at
        spans = token.spans = self._human_spans(token, state)
        if "remind" in spans:
            token.next_remind = at + spans["remind"]
        for kind, timer in _HUMAN_TIMERS:
            if kind in spans:
                self._timer(at + spans[kind], token, timer)

    def _human_spans(self, token: Token, state: Any) -> dict[str, int]:
        """A human step's timer spans for this visit. Expressions (`due: params.sla`) are
        evaluated once, on entry, from the run as it is then (so replay gives the same);
        one that fails leaves the step unarmed and `span_error` set (the step then fails)."""
        spans: dict[str, int] = {}
        values = (
            ("remind", state.remind.every if state.remind is not None else None),
            ("escalate", state.escalate.after if state.escalate is not None else None),
            ("due", state.due),
            ("timeout", state.timeout_after),
        )
        for kind, value in values:
            if value is None:
                continue
            source, found = value, value
            if isinstance(value, str):
                try:
                    found = self.evaluator.evaluate(value, self.scopes[token.scope].namespace)
                    value = parse_duration(found)
                except (ExpressionError, ValueError, TypeError) as exc:
                    token.span_error = f"{kind}: {source} gave no duration ({exc})"
                    return {}
            if value <= 0:  # a timer due at entry would fire, and re-arm, for ever
                token.span_error = f"{kind}: {source} gave {found!r}, not a positive duration"
                return {}
            spans[kind] = seconds_to_us(value)
        return spans

    def _timer(self, due: int, token: Token, kind: str) -> None:
        self._timer_seq += 1
        heapq.heappush(
            self.timers, (due, self._timer_seq, token.scope, token.state, token.visit, kind)
        )

    def _token_for(self, data: Mapping[str, Any]) -> Token | None:
        """The live token an effect-result event refers to (None if it moved on)."""
        scope_key = self.by_step.get(data["step"])
        if scope_key is None:
            return None
        token = self.tokens.get(scope_key)
        if token is None or token.visit != data.get("visit", token.visit):
            return None
        return token

    def _on_task_assigned(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is not None:
            token.assigned = True
            token.candidates = tuple(event.data.get("candidates", ()))
            self.outstanding.pop(f"assign:{token.step}:{token.visit}", None)

    def _on_task_claimed(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is not None:
            token.claimed_by = event.data["actor"]

    def _on_task_reminded(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is None:
            return
        token.reminders = int(event.data.get("number", token.reminders + 1))
        self.outstanding.pop(f"remind:{token.step}:{token.visit}:{token.reminders}", None)
        token.next_remind = None  # earlier timers still queued are superseded
        state = self.states[token.state]
        if state.remind is not None and (
            state.remind.max is None or token.reminders < state.remind.max
        ):
            # the next one `every` after this one, also when this one came late (a runner
            # that was down sends one reminder on its return, not every one it missed)
            every = token.spans["remind"]
            following = max(token.entered_at + every * (token.reminders + 1), event.at + every)
            token.next_remind = following
            self._timer(following, token, "remind")

    def _on_task_escalated(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is not None:
            token.escalated = True
            token.roles = (*token.roles, event.data["to"])
            self.outstanding.pop(f"escalate:{token.step}:{token.visit}", None)

    def _on_task_overdue(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is not None:
            token.overdue = True

    def _on_task_timed_out(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is not None:
            token.outcome = "on_timeout"
            self.agenda[token.scope] = None

    def _on_task_completed(self, event: Event) -> None:
        data = event.data
        token = self._token_for(data)
        if token is None:
            return
        record = self._step_record(token)
        record.update(
            {
                "actor": data.get("actor"),
                "role": data.get("role"),
                "fields": data.get("fields", {}),
                "note": data.get("note"),
                "evidence": data.get("evidence", {}),
                "completed_at": event.at,
                "visit": token.visit,
            }
        )
        if token.kind == "approval":
            token.approvals[data["actor"]] = event.at
            state = self.states[token.state]
            if len(token.approvals) >= state.approvals:
                record["outcome"] = "approved"
                token.outcome = "on_approve"
        else:
            record["outcome"] = "done"
            token.outcome = "next"
        self.agenda[token.scope] = None

    def _step_record(self, token: Token) -> dict[str, Any]:
        """What people did at this visit of the step (`steps.X` in expressions).

        A new visit starts a new record, so nothing of an earlier visit leaks into it.
        """
        record = self.steps.get(token.step)
        if record is None or record.get("visit") != token.visit:
            record = {"visit": token.visit}
            self.steps[token.step] = record
        return record

    def _on_task_rejected(self, event: Event) -> None:
        data = event.data
        token = self._token_for(data)
        if token is None:
            return
        token.rejections[data["actor"]] = data.get("reason", "")
        # Any rejection rejects (veto), also for N-of-M approvals.
        record = self._step_record(token)
        record.update(
            {
                "actor": data.get("actor"),
                "role": data.get("role"),
                "outcome": "rejected",
                "reason": data.get("reason"),
                "completed_at": event.at,
                "visit": token.visit,
                "fields": data.get("fields", {}),
            }
        )
        token.outcome = "on_reject"
        self.agenda[token.scope] = None

    def _on_action_attempted(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is None:
            return
        token.attempt = event.data["attempt"]
        token.in_flight = event.data
        token.in_flight_at = event.at
        token.retry_at = None

    def _on_action_succeeded(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is None:
            return
        self._settle(token, "action", event.data.get("attempt", token.attempt))
        token.result = event.data.get("result")
        token.outcome = "next"
        self.agenda[token.scope] = None

    def _on_action_failed(self, event: Event) -> None:
        data = event.data
        token = self._token_for(data)
        if token is None:
            return
        attempt = int(data.get("attempt", token.attempt))
        if token.outcome is not None or attempt < token.attempt:
            # a late answer of an attempt given up on (its driver outlived its lease): the
            # attempt in force decides; only a success counts from any attempt (one key)
            return
        self._settle(token, "action", attempt)
        token.attempt = attempt  # (inputs that cannot be rendered fail the next attempt)
        state = self.states[token.state]
        retryable = bool(data.get("retryable", False))
        if retryable and token.attempt < state.retry.attempts:
            delay = retry_delay(state.retry, self.run_id, token.step, token.visit, token.attempt)
            after = int(data.get("retry_after_us") or 0)
            token.retry_at = event.at + max(delay, after)
            self._timer(token.retry_at, token, "retry")
            return
        token.error = {
            "error": data.get("error", "Error"),
            "message": data.get("message", ""),
            "state": token.state,
        }
        token.outcome = "catch"
        self.agenda[token.scope] = None

    def _settle(self, token: Token, prefix: str, attempt: int) -> None:
        token.in_flight = None
        effect_id = token.action_effect
        if effect_id is None or not effect_id.endswith(f":{attempt}"):
            effect_id = f"{prefix}:{token.step}:{token.visit}:{attempt}"
        self.outstanding.pop(effect_id, None)

    def _on_notification_sending(self, event: Event) -> None:
        """A driver claimed the delivery; others leave it to that driver for a lease."""
        token = self._token_for(event.data)
        if token is not None and token.kind == "notify":
            token.in_flight = event.data
            token.in_flight_at = event.at

    def _on_notification_done(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is not None and token.kind == "notify":
            self.outstanding.pop(f"notify:{token.step}:{token.visit}", None)
            token.outcome = "next"
            self.agenda[token.scope] = None

    def _on_call_started(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is not None:
            token.child_run = event.data["child"]
            self.outstanding.pop(f"call:{token.step}:{token.visit}", None)

    def _on_call_finished(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is None:
            return
        if event.data.get("status") == "succeeded":
            token.result = event.data.get("output", {})
            token.outcome = "next"
        else:
            token.error = {
                "error": "CallFailed",
                "message": event.data.get("message", ""),
                "state": token.state,
            }
            token.outcome = "catch"
        self.agenda[token.scope] = None

    def _on_map_started(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is not None:
            key = self._fresh_container(token)
            container = Container("map", token.visit, items=list(event.data.get("items", [])))
            self.containers[key] = container
            self.agenda[token.scope] = None

    def _on_parallel_started(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is not None:
            key = self._fresh_container(token)
            self.containers[key] = Container("parallel", token.visit)

    def _fresh_container(self, token: Token) -> str:
        """Forget the children of an earlier visit of the same parallel/map state."""
        key = token.scope + "/" + token.state
        old = self.containers.pop(key, None)
        if old is not None:
            for child in old.children:
                for nested in self._descendants(child):
                    self.scopes.pop(nested, None)
                    self.containers.pop(nested, None)
                self.scopes.pop(child, None)
        inner = self.inner.setdefault(token.scope, [])
        if key not in inner:
            inner.append(key)
        return key

    def _descendants(self, scope_key: str) -> list[str]:
        """Scopes nested anywhere inside `scope_key` (through its parallel/map states)."""
        found: list[str] = []
        todo = [scope_key]
        while todo:
            current = todo.pop()
            for container_key in self.inner.get(current, ()):
                container = self.containers.get(container_key)
                if container is not None:
                    found += container.children
                    todo += container.children
        return found

    def _on_wait_started(self, event: Event) -> None:
        token = self._token_for(event.data)
        if token is not None:
            token.until = int(event.data["until"])
            self._timer(token.until, token, "wait")

    def _on_scope_finished(self, event: Event) -> None:
        key: str = event.data["scope"]
        scope = self.scopes.get(key)
        if scope is None or scope.parent is None:
            return
        scope.status = event.data["status"]
        if scope.status == "failed":
            scope.error = {k: v for k, v in event.data.items() if k not in ("scope", "status")}
        for nested in self._descendants(key):
            token = self.tokens.pop(nested, None)
            if token is not None:
                self._leave(token)
            if nested in self.scopes:
                self.scopes[nested].status = "cancelled"
        token = self.tokens.pop(key, None)
        if token is not None:
            self._leave(token)
        container = self.containers[scope.parent + "/" + str(scope.owner)]
        container.active -= 1
        if scope.status == "succeeded":
            container.succeeded += 1
        elif scope.status == "failed":
            container.failed += 1
        if container.kind == "map":
            container.results.append(
                {
                    "index": scope.index,
                    "status": scope.status,
                    "vars": dict(scope.local_vars),
                    **({"error": scope.error} if scope.error else {}),
                }
            )
        self.agenda[scope.parent] = None

    def _on_vars_saved(self, event: Event) -> None:
        """`save_as` results belong to the run (or to a map item); `last_error` belongs to
        the branch that caught it, so two branches failing at once each see their own."""
        scope = self.scopes.get(event.data.get("scope", ROOT))
        name = event.data["name"]
        per_branch = name == LAST_ERROR
        while scope is not None and scope.parent is not None:
            if scope.index is not None or (per_branch and scope.branch is not None):
                break
            scope = self.scopes.get(scope.parent)
        local = scope is not None and scope.parent is not None
        target = scope.local_vars if local and scope is not None else self.vars
        target[name] = event.data.get("value")

    def _on_run_finished(self, event: Event) -> None:
        self.status = event.data["status"]
        self.finished_at = event.at
        self.output = dict(event.data.get("output", {}))
        if self.status != "succeeded":
            self.error = {k: v for k, v in event.data.items() if k != "status"}
        for token in list(self.tokens.values()):
            self._leave(token)
        self.tokens.clear()
        self.outstanding.clear()
        self.agenda.clear()
        self.timers.clear()

    # ------------------------------------------------------------ decisions

    def advance(self, now: int) -> list[Event]:
        """Make every decision due at `now`; return the new events (already applied)."""
        out: list[Event] = []
        if self.status != "running":
            return out
        if not self.root_entered:
            self._enter(out, now, ROOT, self.sop.start)
        if self.timers and self.timers[0][0] <= now:
            self._fire_timers(now, out)
        agenda = self.agenda
        tokens = self.tokens
        deciders = self._deciders
        states = self.states
        for _guard in range(1_000_000):
            if not agenda:
                if self.timers and self.timers[0][0] <= now:
                    self._fire_timers(now, out)
                    continue
                return out
            if self.status != "running":
                return out
            scope_key = next(iter(agenda))
            del agenda[scope_key]
            token = tokens.get(scope_key)
            if token is not None:
                deciders[token.kind](token, states[token.state], now, out)
        raise RuntimeError(f"{self.sop.id}: no progress after 1,000,000 decisions")

    def _emit(self, out: list[Event], type_: str, at: int, data: dict[str, Any]) -> None:
        event = Event(type_, at, data)
        self.apply(event)
        out.append(event)

    def _enter(self, out: list[Event], at: int, scope: str, state: str, **extra: Any) -> None:
        self._emit(out, "state.entered", at, {"scope": scope, "state": state, **extra})

    def _fire_timers(self, now: int, out: list[Event]) -> None:
        timers = self.timers
        while timers and timers[0][0] <= now:
            due, _seq, scope_key, state_id, visit, kind = heapq.heappop(timers)
            token = self.tokens.get(scope_key)
            if (
                token is None
                or token.state != state_id
                or token.visit != visit
                or token.outcome is not None
            ):
                continue
            state = self.states[token.state]
            ref = {"step": token.step, "visit": token.visit}
            if kind == "remind":
                if due != token.next_remind:
                    continue  # superseded: a later reminder was already recorded
                number = token.reminders + 1
                effect_id = f"remind:{token.step}:{token.visit}:{number}"
                self._add_effect(
                    token, Remind(effect_id, token.step, token.visit, number, state.role)
                )
            elif kind == "escalate" and not token.escalated:
                effect_id = f"escalate:{token.step}:{token.visit}"
                self._add_effect(
                    token, Escalate(effect_id, token.step, token.visit, state.escalate.to)
                )
            elif kind == "overdue" and not token.overdue:
                self._emit(out, "task.overdue", now, {**ref, "due_at": due})
            elif kind == "timeout":
                self._emit(out, "task.timed_out", now, {**ref, "policy": _policy(state)})
            elif kind == "retry" and token.retry_at == due:
                token.retry_at = None
                self.agenda[scope_key] = None
            elif kind == "wait" and token.until == due:
                token.outcome = "next"
                self.agenda[scope_key] = None

    def _goto(self, token: Token, target: str, now: int, out: list[Event]) -> None:
        """Enter `target` in the token's scope (the hot path, so applied inline)."""
        event = Event(
            "state.entered", now, {"scope": token.scope, "state": target, "from": token.state}
        )
        self._on_state_entered(event)
        self.events_applied += 1
        out.append(event)

    def _fail_scope(
        self, token: Token, error: Mapping[str, Any], now: int, out: list[Event]
    ) -> None:
        """An unhandled failure: ends the run, or the branch/map item it happened in."""
        if token.scope == ROOT:
            self._emit(out, "run.finished", now, {"status": "failed", **error})
            return
        self._emit(out, "scope.finished", now, {"scope": token.scope, "status": "failed", **error})

    def _decide_human(self, token: Token, state: Any, now: int, out: list[Event]) -> None:
        if token.outcome is None and token.span_error is not None:
            error = {"error": "Invalid", "state": token.state, "message": token.span_error}
            self._fail_scope(token, error, now, out)
            return
        if token.outcome is None:
            if not token.assigned:
                effect_id = f"assign:{token.step}:{token.visit}"
                if effect_id not in self.outstanding:
                    self._add_effect(
                        token,
                        AssignTask(effect_id, token.step, token.visit, token.state, state.role),
                    )
            return
        if token.outcome == "on_timeout":
            policy = state.on_timeout
            if policy == "fail":
                error = {"error": "Timeout", "state": token.state, "message": "step timed out"}
                self._fail_scope(token, error, now, out)
            elif policy == "skip":
                target = state.next if isinstance(state, s.TaskState) else state.on_reject
                self._goto(token, target, now, out)
            else:
                self._goto(token, policy.goto, now, out)
            return
        self._goto(token, getattr(state, token.outcome), now, out)

    def _decide_action(self, token: Token, state: Any, now: int, out: list[Event]) -> None:
        if token.outcome is not None:
            self._leave_with_result(token, state, now, out)
            return
        if token.retry_at is not None:
            return
        attempt = token.attempt if token.in_flight is not None else token.attempt + 1
        effect_id = f"action:{token.step}:{token.visit}:{attempt}"
        if effect_id in self.outstanding:
            return
        if token.in_flight is not None:
            inputs = token.in_flight.get("inputs", {})
        elif not state.with_:
            inputs = {}
        else:
            try:
                inputs = self.evaluator.render_value(
                    dict(state.with_), self.scopes[token.scope].namespace
                )
            except ExpressionError as exc:
                self._emit(
                    out,
                    "action.failed",
                    now,
                    {
                        "step": token.step,
                        "visit": token.visit,
                        "attempt": attempt,
                        "error": "Invalid",
                        "message": str(exc),
                        "retryable": False,
                    },
                )
                return
        token.action_effect = effect_id
        self._add_effect(
            token,
            RunAction(
                effect_id,
                token.step,
                token.visit,
                attempt,
                state.uses,
                inputs,
                self._timeout_us[token.state],
                f"{self.run_id}/{token.step}/{token.visit}",  # = idempotency_key(...)
            ),
        )

    def _leave_with_result(self, token: Token, state: Any, now: int, out: list[Event]) -> None:
        """An action or call has its outcome: save the result and go on, or catch."""
        if token.outcome == "catch":
            self._catch(token, state, now, out)
            return
        if state.save_as:
            saved = {"scope": token.scope, "name": state.save_as, "value": token.result}
            self._emit(out, "vars.saved", now, saved)
        self._goto(token, state.next, now, out)

    def _catch(self, token: Token, state: Any, now: int, out: list[Event]) -> None:
        error = token.error or {"error": "Error"}
        name = error.get("error", "Error")
        target = state.catch.get(name) or state.catch.get("Error")
        if target is None:
            self._fail_scope(token, error, now, out)
            return
        self._emit(
            out, "vars.saved", now, {"scope": token.scope, "name": LAST_ERROR, "value": error}
        )
        self._goto(token, target, now, out)

    def _decide_choice(self, token: Token, state: Any, now: int, out: list[Event]) -> None:
        namespace = self.scopes[token.scope].namespace
        for choice in state.choices:
            try:
                taken = self.evaluator.evaluate(choice.when, namespace)
            except ExpressionError as exc:
                error = {"error": "Invalid", "state": token.state, "message": str(exc)}
                self._fail_scope(token, error, now, out)
                return
            if taken:
                self._goto(token, choice.next, now, out)
                return
        if state.default is None:
            error = {
                "error": "Invalid",
                "state": token.state,
                "message": "no choice matched and there is no default",
            }
            self._fail_scope(token, error, now, out)
            return
        self._goto(token, state.default, now, out)

    def _decide_end(self, token: Token, state: Any, now: int, out: list[Event]) -> None:
        namespace = self.scopes[token.scope].namespace
        if token.scope == ROOT:
            if isinstance(state, s.SucceedState):
                try:
                    output = self.evaluator.render_value(dict(state.output), namespace)
                except ExpressionError as exc:
                    error = {"error": "Invalid", "state": token.state, "message": str(exc)}
                    self._emit(out, "run.finished", now, {"status": "failed", **error})
                    return
                self._emit(out, "run.finished", now, {"status": "succeeded", "output": output})
            else:
                error = {"error": state.error, "state": token.state}
                if state.cause is not None:
                    error["cause"] = state.cause
                self._emit(out, "run.finished", now, {"status": "failed", **error})
            return
        status = "succeeded" if isinstance(state, s.SucceedState) else "failed"
        data: dict[str, Any] = {"scope": token.scope, "status": status}
        if status == "failed":
            data.update({"error": state.error, "state": token.state})
        self._emit(out, "scope.finished", now, data)

    def _decide_parallel(self, token: Token, state: Any, now: int, out: list[Event]) -> None:
        key = token.scope + "/" + token.state
        container = self.containers.get(key)
        ref = {"step": token.step, "visit": token.visit}
        if container is None or container.visit != token.visit:
            self._emit(out, "parallel.started", now, dict(ref))
            for name, branch in state.branches.items():
                self._enter(
                    out,
                    now,
                    f"{key}.{name}",
                    branch.start,
                    parent=token.scope,
                    owner=token.state,
                    branch=name,
                )
            return
        total = len(state.branches)
        need = total if state.join == "all" else 1 if state.join == "any" else int(state.join)
        done = container.succeeded + container.failed
        if container.succeeded >= need:
            self._cancel_children(container, now, out)
            self._goto(token, state.next, now, out)
        elif total - container.failed < need or (done == total):
            self._cancel_children(container, now, out)
            error = {
                "error": "BranchFailed",
                "state": token.state,
                "message": f"{container.failed} of {total} branches failed",
            }
            if state.on_fail:
                self._goto(token, state.on_fail, now, out)
            else:
                self._fail_scope(token, error, now, out)

    def _cancel_children(self, container: Container, now: int, out: list[Event]) -> None:
        for child in container.children:
            if self.scopes[child].status == "active":
                self._emit(out, "scope.finished", now, {"scope": child, "status": "cancelled"})

    def _decide_map(self, token: Token, state: Any, now: int, out: list[Event]) -> None:
        key = token.scope + "/" + token.state
        container = self.containers.get(key)
        ref = {"step": token.step, "visit": token.visit}
        if container is None or container.visit != token.visit:
            try:
                items = self.evaluator.evaluate(state.items, self.scopes[token.scope].namespace)
                if not isinstance(items, list | tuple):
                    raise TypeError(
                        f"items must be a list, but {state.items!r} gave {type(items).__name__}"
                    )
                items = list(items)
            except (ExpressionError, TypeError) as exc:
                error = {"error": "Invalid", "state": token.state, "message": str(exc)}
                self._fail_scope(token, error, now, out)
                return
            self._emit(out, "map.started", now, {**ref, "items": items})
            container = self.containers[key]
        total = len(container.items)
        failing = container.failed > state.tolerate_failures  # stop starting new items
        while (
            not failing and container.started < total and container.active < state.max_concurrency
        ):
            index = container.started
            self._enter(
                out,
                now,
                f"{key}[{index}]",
                state.iterator.start,
                parent=token.scope,
                owner=token.state,
                index=index,
            )
        if container.active > 0 or (container.started < total and not failing):
            return
        if failing:
            error = {
                "error": "ItemsFailed",
                "state": token.state,
                "message": f"{container.failed} of {total} items failed "
                f"({total - container.started} not started)",
            }
            if state.on_fail:
                self._save_map(token, state, container, now, out)
                self._goto(token, state.on_fail, now, out)
            else:
                self._fail_scope(token, error, now, out)
            return
        self._save_map(token, state, container, now, out)
        self._goto(token, state.next, now, out)

    def _save_map(
        self, token: Token, state: Any, container: Container, now: int, out: list[Event]
    ) -> None:
        if state.save_as:
            results = sorted(container.results, key=lambda r: r["index"])
            self._emit(
                out,
                "vars.saved",
                now,
                {"scope": token.scope, "name": state.save_as, "value": results},
            )

    def _decide_wait(self, token: Token, state: Any, now: int, out: list[Event]) -> None:
        if token.outcome == "next":
            self._goto(token, state.next, now, out)
            return
        if token.until is not None:
            return
        try:
            if isinstance(state.for_, int | float):
                until = token.entered_at + seconds_to_us(state.for_)
            elif state.for_ is not None:  # an expression giving a duration (params.cadence)
                value = self.evaluator.evaluate(state.for_, self.scopes[token.scope].namespace)
                until = token.entered_at + seconds_to_us(parse_duration(value))
            else:
                value = self.evaluator.evaluate(state.until, self.scopes[token.scope].namespace)
                until = _instant_us(value)
        except (ExpressionError, ValueError, TypeError) as exc:
            error = {"error": "Invalid", "state": token.state, "message": str(exc)}
            self._fail_scope(token, error, now, out)
            return
        self._emit(
            out, "wait.started", now, {"step": token.step, "visit": token.visit, "until": until}
        )
        if until <= now:
            self._fire_timers(now, out)

    def _decide_notify(self, token: Token, state: Any, now: int, out: list[Event]) -> None:
        if token.outcome == "next":
            self._goto(token, state.next, now, out)
            return
        effect_id = f"notify:{token.step}:{token.visit}"
        if effect_id not in self.outstanding:
            self._add_effect(
                token,
                SendNotification(
                    id=effect_id,
                    step=token.step,
                    visit=token.visit,
                    to=tuple(state.to),
                    template=state.template,
                    message=state.message,
                    context=_plain(self.scopes[token.scope].namespace),
                ),
            )

    def _decide_call(self, token: Token, state: Any, now: int, out: list[Event]) -> None:
        if token.outcome is not None:
            self._leave_with_result(token, state, now, out)
            return
        if token.child_run is not None:
            return
        effect_id = f"call:{token.step}:{token.visit}"
        if effect_id in self.outstanding:
            return
        try:
            params = self.evaluator.render_value(
                dict(state.with_), self.scopes[token.scope].namespace
            )
        except ExpressionError as exc:
            token.error = {"error": "Invalid", "state": token.state, "message": str(exc)}
            self._catch(token, state, now, out)
            return
        self._add_effect(
            token, StartCall(effect_id, token.step, token.visit, state.sop, state.version, params)
        )

    # ------------------------------------------------------------ queries

    def effects(self) -> list[Effect]:
        """Outside work outstanding now, oldest first (level-triggered, see module doc)."""
        return list(self.outstanding.values())

    def wake_at(self) -> int | None:
        """The earliest moment a driver should look at this run again (None: only people).

        That is the first live timer, or the moment an action attempted by another driver
        is past its timeout and lease, when it must be re-run (see LEASE_GRACE_US).
        """
        due: int | None = None
        while self.timers:
            first, _seq, scope_key, state_id, visit, _kind = self.timers[0]
            token = self.tokens.get(scope_key)
            if token is None or token.state != state_id or token.visit != visit:
                heapq.heappop(self.timers)
                continue
            due = first
            break
        for token in self.tokens.values():
            if token.in_flight is not None:
                timeout = self._timeout_us.get(token.state, NOTIFY_TIMEOUT_US)
                lease = token.in_flight_at + timeout + LEASE_GRACE_US
                due = lease if due is None else min(due, lease)
        return due

    def active_tasks(self) -> list[Token]:
        """Human steps waiting for people, in the order they were entered."""
        return sorted(
            (
                t
                for t in self.tokens.values()
                if t.kind in ("task", "approval") and t.outcome is None
            ),
            key=lambda t: (t.entered_at, t.step),
        )

    def token(self, step: str) -> Token | None:
        scope = self.by_step.get(step)
        return self.tokens.get(scope) if scope is not None else None

    def check_completion(
        self,
        step: str,
        actor: str,
        actor_roles: Sequence[str],
        *,
        reject: bool = False,
        ignore_claim: bool = False,
    ) -> Refusal | None:
        """Why `actor` may not complete (or reject) `step` now; None if they may."""
        where = f"{self.sop.id} v{self.sop.version}, run {self.run_id}"
        if self.status != "running":
            return Refusal("not_active", f"{where} is {self.status}; nothing can be completed")
        token = self.token(step)
        if token is None or token.kind not in ("task", "approval") or token.outcome is not None:
            done = self.steps.get(step)
            if done is not None and done.get("actor"):
                return Refusal(
                    "already",
                    f"step {step!r} ({where}) was already {done.get('outcome', 'completed')} "
                    f"by {done['actor']} at {us_to_iso(done['completed_at'])}",
                )
            open_steps = [t.step for t in self.active_tasks()]
            return Refusal(
                "not_active",
                f"step {step!r} is not waiting for anyone in {where}; open steps: "
                + (", ".join(open_steps) or "none"),
            )
        state = self.states[token.state]
        allowed = set(token.roles)
        if not allowed & set(actor_roles):
            return Refusal(
                "not_allowed",
                f"{actor} may not act on step {step!r} ({where}): it needs role "
                f"{' or '.join(sorted(allowed))}, and {actor} holds "
                f"{', '.join(actor_roles) or 'no roles'}",
            )
        several = isinstance(state, s.ApprovalState) and state.approvals > 1
        if token.claimed_by not in (None, actor) and not ignore_claim and not several:
            # (an N-of-M approval is never held by one claimant: the others must decide too)
            return Refusal(
                "not_allowed",
                f"step {step!r} ({where}) is claimed by {token.claimed_by}; "
                "ask a lead to reassign it",
            )
        if isinstance(state, s.ApprovalState):
            if actor in token.approvals or actor in token.rejections:
                return Refusal("already", f"{actor} has already decided on step {step!r}")
            if state.four_eyes:
                other = self.steps.get(_step_key(token.scope, state.four_eyes)) or self.steps.get(
                    state.four_eyes
                )
                if other is not None and other.get("actor") == actor:
                    return Refusal(
                        "not_allowed",
                        f"four-eyes: {actor} completed {state.four_eyes!r} and may not also "
                        f"approve {step!r}; another {state.role} must decide",
                    )
        if reject and isinstance(state, s.TaskState) and state.on_reject is None:
            return Refusal(
                "invalid",
                f"step {step!r} cannot be rejected (the SOP gives it no on_reject); complete it "
                "or ask a lead to reassign it",
            )
        return None

    def snapshot(self) -> dict[str, Any]:
        """A comparable picture of the run (replay must reproduce it exactly)."""
        return {
            "status": self.status,
            "params": self.params,
            "vars": self.vars,
            "steps": self.steps,
            "tokens": {
                k: (t.state, t.visit, t.outcome, t.assigned, t.attempt, t.reminders, t.escalated)
                for k, t in sorted(self.tokens.items())
            },
            "scopes": {k: v.status for k, v in sorted(self.scopes.items())},
            "effects": sorted(self.outstanding),
            "output": self.output,
            "error": self.error,
        }


# ---------------------------------------------------------------- helpers


def _step_key(scope: str, state: str) -> str:
    if "[" not in scope:
        return state
    indices = _INDEX.findall(scope)
    return state + "".join(f"[{i}]" for i in indices)


def _policy(state: Any) -> str:
    policy = state.on_timeout
    return policy if isinstance(policy, str) else f"goto:{policy.goto}"


def _instant_us(value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1_000_000)
    if hasattr(value, "isoformat"):
        return iso_to_us(value.isoformat())
    return iso_to_us(str(value))


def _plain(namespace: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, ChainMap) else v) for k, v in namespace.items()}


def idempotency_key(run_id: str, step: str, visit: int) -> str:
    """Stable per (run, step, visit): every attempt of one action visit shares it.

    Readable on purpose (`RUN/STEP/VISIT`), so a store-side record leads back to the
    ledger; connectors hash or shorten it where a platform limits the key's form.
    """
    return f"{run_id}/{step}/{visit}"


def retry_delay(retry: s.Retry, run_id: str, step: str, visit: int, attempt: int) -> int:
    """Backoff before attempt `attempt + 1`, in µs; jitter is a hash, not a random draw."""
    base = min(retry.max_delay, retry.backoff * retry.factor ** (attempt - 1))
    digest = hashlib.sha256(f"{run_id}\x1f{step}\x1f{visit}\x1f{attempt}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64 * 2 - 1  # in [-1, 1)
    return seconds_to_us(max(0.0, base * (1 + retry.jitter * unit)))


_HANDLERS = {
    "run.started": Run._on_run_started,
    "state.entered": Run._on_state_entered,
    "task.assigned": Run._on_task_assigned,
    "task.claimed": Run._on_task_claimed,
    "task.reminded": Run._on_task_reminded,
    "task.escalated": Run._on_task_escalated,
    "task.overdue": Run._on_task_overdue,
    "task.timed_out": Run._on_task_timed_out,
    "task.completed": Run._on_task_completed,
    "task.rejected": Run._on_task_rejected,
    "action.attempted": Run._on_action_attempted,
    "action.succeeded": Run._on_action_succeeded,
    "action.failed": Run._on_action_failed,
    "notification.sending": Run._on_notification_sending,
    "notification.sent": Run._on_notification_done,
    "notification.failed": Run._on_notification_done,
    "call.started": Run._on_call_started,
    "call.finished": Run._on_call_finished,
    "map.started": Run._on_map_started,
    "parallel.started": Run._on_parallel_started,
    "wait.started": Run._on_wait_started,
    "scope.finished": Run._on_scope_finished,
    "vars.saved": Run._on_vars_saved,
    "run.finished": Run._on_run_finished,
}

#: Event types the machine understands; others (task.refused, notes) are recorded only.
EVENT_TYPES = (*_HANDLERS, "task.refused", "run.note")
