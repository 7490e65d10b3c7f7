"""SOP analytics from the ledger: cycle times, where steps spend their time, on-time rates.

Edge module: the figures are pure functions of (events per run, roster, window); only
`report` reads a ledger and `cmd_report` talks to a terminal. Standard library and
storeops only — never Prefect, httpx or a web framework (flows and the web app call in).

Definitions (every time is from the ledger's own timestamps, UTC; a window is [since, until)):

- A figure is counted in the window where the thing it measures *ended*: a run when it
  finished, a step visit when the run left the state, a task when it was closed, a
  rejection when it was recorded. Weekly reports therefore never count anything twice.
- **Cycle time** of a run: `run.started` → `run.finished`, over runs that finished in the
  window, whatever their status. Percentiles interpolate linearly between the closest
  ranks (numpy's default): p50 of 1 h and 3 h is 2 h, p90 is 2 h 48 m.
- A **step visit** lasts from `state.entered` until the run leaves that state (the next
  state entered in the same scope, the scope finishing, or the run finishing). Items of a
  `map` count as visits of the one state. Its time is split into:
  - *waiting*: ready but nobody on it — an action's time before its first attempt and
    between a failed attempt and the next (retry backoff), a notification's time before
    it was sent, a human step's time before it was assigned and, when the person claimed
    it (`task.claimed`), from assignment to the claim;
  - *working*: an action's attempts (`action.attempted` → its result), a notification's
    delivery, a claimed human step from the claim to leaving;
  - *with people*: an unclaimed human step from `task.assigned` to leaving. The ledger has
    no "started working" event without a claim, so waiting for a person and that person's
    work cannot be told apart: this is the whole time the step was in people's hands;
  - *timer*: a `wait` step (waiting by design); *sub-run*: a `call` step, whose own steps
    are reported under the called SOP.
  Choice, end, parallel and map states are not steps here (instant, or containers whose
  branches are reported). Step p50/p90 are over visit durations.
- The **slowest step** of an SOP is the task, approval, action or notify step with the
  highest p50 visit duration (ties: higher p90, then step id).
- **Rework**: a visit of a human step (task, approval) after its first in the same run and
  scope — people doing it again after a rejection or a failed check. Automated steps that
  repeat are loops by design (status updates, polling): their visits count, not as rework.
  **Rejections**: `task.rejected` events.
- **On time** (human steps with a due time, `task.assigned.due_at`): a task is *on time*
  when it was completed or rejected at or before its due time and no `task.overdue` was
  recorded; *late* when it was closed after it, or left overdue (its branch cancelled);
  *timed out* when `task.timed_out` closed it. Breaches = late + timed out; the on-time
  rate is on time / (on time + late + timed out). Per role: the role the step was assigned
  to, once per task. Per person: each completion or rejection is judged for the person who
  recorded it; a task that timed out counts against every person it was assigned to who
  had not acted on it (it was in all their inboxes). *Open overdue*: tasks still open at
  the end of the window and past due (not in the rate; they count when they close).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from storeops.durations import format_duration, iso_to_us
from storeops.roster import EMPTY, Roster
from storeops.spec import localize

if TYPE_CHECKING:
    from storeops.ledger import Ledger
    from storeops.settings import Settings

__all__ = [
    "KINDS",
    "STEPS_CHARTED",
    "TABLES",
    "Column",
    "OnTime",
    "Report",
    "RunHistory",
    "SopCycle",
    "SopInfo",
    "StepStats",
    "analyse",
    "cmd_report",
    "columns",
    "format_cell",
    "parse_window",
    "percentile",
    "report",
    "report_charts",
    "report_to_csv",
    "report_to_dict",
    "report_to_text",
    "table_rows",
]

TABLES: Final = ("cycle", "steps", "slowest", "roles", "people")
"""The report's tables, in the order the text output and the web page show them."""

KINDS: Final = ("task", "approval", "action", "notify", "call", "wait")
"""Step kinds that appear in the step table (see the module docstring)."""

STEPS_CHARTED: Final = 30
"""At most this many steps (the slowest by mean) in the waiting-vs-working chart."""

_SLOWEST_KINDS: Final = frozenset({"task", "approval", "action", "notify"})
_HUMAN: Final = frozenset({"task", "approval"})
_PARTS: Final = ("waiting", "working", "with_people", "timer", "sub_run")
_US: Final = 1_000_000


# ---------------------------------------------------------------- inputs


class EventLike(Protocol):
    """What the figures read of a ledger event (`storeops.ledger.StoredEvent` fits)."""

    @property
    def type(self) -> str: ...

    @property
    def at(self) -> str: ...

    @property
    def data(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class RunHistory:
    """One run's events in ledger order (seq), with the SOP it ran."""

    run_id: str
    sop_id: str
    events: Sequence[EventLike]


@dataclass(frozen=True, slots=True)
class SopInfo:
    """What a definition adds to the events: titles and the exact kind of each state
    (events alone cannot tell an approval from a task). Optional everywhere."""

    title: str | dict[str, str] | None = None
    kinds: Mapping[str, str] = field(default_factory=dict)
    titles: Mapping[str, str | dict[str, str] | None] = field(default_factory=dict)


# ---------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class SopCycle:
    """One SOP's runs in the window. Durations in seconds; None when nothing finished."""

    sop: str
    title: str | dict[str, str] | None
    started: int
    finished: int
    succeeded: int
    failed: int
    open: int
    p50: float | None
    p90: float | None
    rejections: int
    rework: int
    runs_with_rework: int
    refusals: int


@dataclass(frozen=True, slots=True)
class StepStats:
    """One step of one SOP: visits that ended in the window. `p50`/`p90` are visit
    durations; `waiting` … `sub_run` are means per visit (seconds), and add up to the
    mean duration."""

    sop: str
    step: str
    title: str | dict[str, str] | None
    kind: str
    visits: int
    rework: int
    rejections: int
    p50: float
    p90: float
    mean: float
    waiting: float
    working: float
    with_people: float
    timer: float
    sub_run: float


@dataclass(frozen=True, slots=True)
class OnTime:
    """On-time figures of one role (`who` = role id) or one person (`who` = person id)."""

    who: str
    title: str | dict[str, str] | None
    tasks: int
    on_time: int
    late: int
    timed_out: int
    escalated: int
    open_overdue: int

    @property
    def judged(self) -> int:
        return self.on_time + self.late + self.timed_out

    @property
    def breaches(self) -> int:
        return self.late + self.timed_out

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.judged if self.judged else None


@dataclass(frozen=True, slots=True)
class Report:
    """Everything `report` found, language-neutral (titles keep both languages)."""

    since: datetime
    until: datetime
    sop: str | None
    runs: int
    cycle: tuple[SopCycle, ...]
    steps: tuple[StepStats, ...]
    slowest: tuple[StepStats, ...]
    roles: tuple[OnTime, ...]
    people: tuple[OnTime, ...]


# ---------------------------------------------------------------- figures (pure)


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _us(value: Any) -> int | None:
    """A ledger instant as integer microseconds: ISO text, or already microseconds
    (`task.overdue` records `due_at` as an integer)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value:
        return iso_to_us(value)
    return None


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; give an aware datetime")
    return iso_to_us(moment.astimezone(UTC).isoformat())


@dataclass(slots=True)
class _Visit:
    """One visit of a state, folded from the run's events."""

    run: str
    scope: str
    state: str
    step: str
    visit: int
    entered: int
    kind: str = "other"
    left: int | None = None
    assigned: int | None = None
    due: int | None = None
    role: str | None = None
    candidates: tuple[str, ...] = ()
    claimed: int | None = None
    overdue_at: int | None = None
    escalated: bool = False
    timed_out: int | None = None
    acts: list[tuple[int, str, str]] = field(default_factory=list)  # (at, actor, type)
    attempts: list[list[int | None]] = field(default_factory=list)  # [start, end]
    sending: int | None = None
    sent: int | None = None


@dataclass(slots=True)
class _Fold:
    """The visits and run-level facts of one run."""

    sop: str
    started: int | None = None
    finished: int | None = None
    status: str | None = None
    visits: list[_Visit] = field(default_factory=list)
    rejections: list[tuple[int, str]] = field(default_factory=list)  # (at, step state)
    refusals: list[int] = field(default_factory=list)


_KIND_OF_EVENT: Final = {
    "task.assigned": "task",
    "action.attempted": "action",
    "notification.sending": "notify",
    "call.started": "call",
    "wait.started": "wait",
    "parallel.started": "parallel",
    "map.started": "map",
}


def _fold(history: RunHistory, info: SopInfo | None) -> _Fold:
    """Replay one run's events into visits. Tolerant: an event about a visit it never saw
    entered (a ledger written by an older storeops) is ignored, never an error."""
    out = _Fold(history.sop_id)
    counters: dict[tuple[str, str], int] = {}
    current: dict[str, _Visit] = {}  # scope -> the visit in progress
    by_ref: dict[tuple[str, int], _Visit] = {}  # (step, visit) -> visit
    kinds = info.kinds if info is not None else {}
    for event in history.events:
        kind, data = event.type, event.data
        at = iso_to_us(event.at)
        if kind == "run.started":
            out.started = at
        elif kind == "state.entered":
            scope, state = str(data.get("scope", "")), str(data.get("state", ""))
            before = current.get(scope)
            if before is not None and before.left is None:
                before.left = at
            number = counters.get((scope, state), 0) + 1
            counters[scope, state] = number
            step = state + "".join(f"[{part.split(']')[0]}]" for part in scope.split("[")[1:])
            visit = _Visit(history.run_id, scope, state, step, number, at)
            visit.kind = kinds.get(state, "other")
            current[scope] = visit
            by_ref[step, number] = visit
            out.visits.append(visit)
        elif kind == "scope.finished":
            ended = current.get(str(data.get("scope", "")))
            if ended is not None and ended.left is None:
                ended.left = at
        elif kind == "run.finished":
            out.finished = at
            out.status = str(data.get("status", ""))
            for open_visit in current.values():
                if open_visit.left is None:
                    open_visit.left = at
        elif kind == "task.refused":
            out.refusals.append(at)
        else:
            found = by_ref.get((str(data.get("step", "")), _int(data.get("visit"))))
            if found is None:
                continue
            if found.kind == "other" and kind in _KIND_OF_EVENT:
                found.kind = _KIND_OF_EVENT[kind]
            _apply(found, kind, at, data, out)
    return out


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def _apply(visit: _Visit, kind: str, at: int, data: Mapping[str, Any], out: _Fold) -> None:
    if kind == "task.assigned":
        visit.assigned = at
        visit.due = _us(data.get("due_at"))
        visit.role = str(data["role"]) if data.get("role") else None
        visit.candidates = tuple(str(p) for p in data.get("candidates", ()))
    elif kind == "task.claimed":
        if visit.claimed is None:
            visit.claimed = at
    elif kind == "task.overdue":
        if visit.overdue_at is None:
            visit.overdue_at = at
        if visit.due is None:
            visit.due = _us(data.get("due_at"))
    elif kind == "task.escalated":
        visit.escalated = True
    elif kind == "task.timed_out":
        visit.timed_out = at
    elif kind in ("task.completed", "task.rejected"):
        visit.acts.append((at, str(data.get("actor", "")), kind))
        if kind == "task.rejected":
            out.rejections.append((at, visit.state))
    elif kind == "action.attempted":
        visit.attempts.append([at, None])
    elif kind in ("action.succeeded", "action.failed"):
        for attempt in reversed(visit.attempts):
            if attempt[1] is None:
                attempt[1] = at
                break
    elif kind == "notification.sending":
        if visit.sending is None:
            visit.sending = at
    elif kind in ("notification.sent", "notification.failed"):
        visit.sent = at


def _parts(visit: _Visit, end: int) -> dict[str, int]:
    """Split a finished visit's duration (microseconds) into the five parts."""
    total = end - visit.entered
    parts = dict.fromkeys(_PARTS, 0)
    if visit.kind in _HUMAN:
        start = visit.assigned if visit.assigned is not None else visit.entered
        if visit.claimed is not None:
            parts["waiting"] = visit.claimed - visit.entered
            parts["working"] = end - visit.claimed
        else:
            parts["waiting"] = start - visit.entered
            parts["with_people"] = end - start
    elif visit.kind == "action":
        worked = sum((e if e is not None else end) - s for s, e in visit.attempts if s is not None)
        parts["working"] = worked
        parts["waiting"] = total - worked
    elif visit.kind == "notify":
        if visit.sending is not None:
            parts["working"] = (visit.sent if visit.sent is not None else end) - visit.sending
        parts["waiting"] = total - parts["working"]
    elif visit.kind == "wait":
        parts["timer"] = total
    elif visit.kind == "call":
        parts["sub_run"] = total
    return parts


@dataclass(slots=True)
class _Tally:
    tasks: int = 0
    on_time: int = 0
    late: int = 0
    timed_out: int = 0
    escalated: int = 0
    open_overdue: int = 0

    def frozen(self, who: str, title: str | dict[str, str] | None) -> OnTime:
        return OnTime(
            who,
            title,
            self.tasks,
            self.on_time,
            self.late,
            self.timed_out,
            self.escalated,
            self.open_overdue,
        )


def _judge(visit: _Visit, at: int) -> str | None:
    """on_time | late for a person's act at `at`; None when the task has no due time."""
    if visit.due is None:
        return None
    overdue_before = visit.overdue_at is not None and visit.overdue_at <= at
    return "late" if at > visit.due or overdue_before else "on_time"


def analyse(
    histories: Iterable[RunHistory],
    roster: Roster = EMPTY,
    *,
    since: datetime,
    until: datetime,
    sops: Mapping[str, SopInfo] | None = None,
    sop: str | None = None,
) -> Report:
    """The report over runs' events, for the window [since, until). Pure and
    deterministic: the same histories (in the same order) give the same report; rows are
    ordered by SOP id, steps in the order runs first entered them, roles and people in
    roster order (then by id)."""
    lo, hi = _to_us(since), _to_us(until)
    infos = sops or {}
    inside = range(lo, hi).__contains__  # half-open window on integer microseconds

    runs_seen = 0
    cycles: dict[str, dict[str, Any]] = {}
    step_visits: dict[tuple[str, str], list[tuple[_Visit, int]]] = {}
    step_rejections: dict[tuple[str, str], int] = {}
    roles: dict[str, _Tally] = {}
    people: dict[str, _Tally] = {}

    for history in histories:
        if sop is not None and history.sop_id != sop:
            continue
        folded = _fold(history, infos.get(history.sop_id))
        if folded.started is None or folded.started >= hi:
            continue
        if folded.finished is not None and folded.finished < lo:
            continue
        runs_seen += 1
        c = cycles.setdefault(
            history.sop_id,
            {"durations": [], "started": 0, "succeeded": 0, "failed": 0, "open": 0}
            | {"rejections": 0, "rework": 0, "runs_with_rework": 0, "refusals": 0},
        )
        c["started"] += inside(folded.started)
        if folded.finished is not None and inside(folded.finished):
            c["durations"].append(folded.finished - folded.started)
            c["succeeded"] += folded.status == "succeeded"
            c["failed"] += folded.status == "failed"
            if any(v.visit > 1 and v.kind in _HUMAN for v in folded.visits):
                c["runs_with_rework"] += 1
        if folded.finished is None or folded.finished >= hi:
            c["open"] += 1
        c["refusals"] += sum(1 for at in folded.refusals if inside(at))
        for at, state in folded.rejections:
            if inside(at):
                c["rejections"] += 1
                key = (history.sop_id, state)
                step_rejections[key] = step_rejections.get(key, 0) + 1

        for visit in folded.visits:
            if visit.kind not in KINDS:
                continue
            if visit.left is not None and inside(visit.left):
                step_visits.setdefault((history.sop_id, visit.state), []).append(
                    (visit, visit.left)
                )
                c["rework"] += visit.visit > 1 and visit.kind in _HUMAN
            if visit.kind in _HUMAN:
                _tally_task(visit, roles, people, lo, hi)

    steps = tuple(_step_rows(step_visits, step_rejections, infos))
    return Report(
        since=since,
        until=until,
        sop=sop,
        runs=runs_seen,
        cycle=tuple(_cycle_rows(cycles, infos)),
        steps=steps,
        slowest=tuple(_slowest(steps)),
        roles=tuple(_ordered(roles, list(roster.roles), lambda r: roster.roles.get(r))),
        people=tuple(
            _ordered(
                people,
                list(roster.people),
                lambda p: roster.people[p].name if p in roster.people else None,
            )
        ),
    )


def _tally_task(
    visit: _Visit, roles: dict[str, _Tally], people: dict[str, _Tally], lo: int, hi: int
) -> None:
    role = visit.role or "?"
    closed = visit.left
    if closed is not None and lo <= closed < hi:
        tally = roles.setdefault(role, _Tally())
        tally.tasks += 1
        tally.escalated += visit.escalated
        if visit.timed_out is not None:
            tally.timed_out += 1
        elif visit.acts:
            verdict = _judge(visit, visit.acts[-1][0])
            if verdict is not None:
                setattr(tally, verdict, getattr(tally, verdict) + 1)
        elif visit.overdue_at is not None:  # left overdue without anyone acting
            tally.late += 1
        if visit.timed_out is not None:
            acted = {actor for _at, actor, _kind in visit.acts}
            for person in (p for p in visit.candidates if p not in acted):
                mine = people.setdefault(person, _Tally())
                mine.tasks += 1
                mine.timed_out += 1
                mine.escalated += visit.escalated
    for at, actor, _kind in visit.acts:
        if lo <= at < hi and actor:
            mine = people.setdefault(actor, _Tally())
            mine.tasks += 1
            mine.escalated += visit.escalated
            verdict = _judge(visit, at)
            if verdict is not None:
                setattr(mine, verdict, getattr(mine, verdict) + 1)
    still_open = visit.entered < hi and (closed is None or closed >= hi)
    if still_open and visit.due is not None and visit.due < hi and visit.assigned is not None:
        roles.setdefault(role, _Tally()).open_overdue += 1
        for person in visit.candidates:
            people.setdefault(person, _Tally()).open_overdue += 1


def _cycle_rows(
    cycles: Mapping[str, Mapping[str, Any]], infos: Mapping[str, SopInfo]
) -> Iterable[SopCycle]:
    for sop_id in sorted(cycles):
        c = cycles[sop_id]
        durations = [d / _US for d in c["durations"]]
        info = infos.get(sop_id)
        yield SopCycle(
            sop=sop_id,
            title=info.title if info is not None else None,
            started=c["started"],
            finished=len(durations),
            succeeded=c["succeeded"],
            failed=c["failed"],
            open=c["open"],
            p50=percentile(durations, 0.5),
            p90=percentile(durations, 0.9),
            rejections=c["rejections"],
            rework=c["rework"],
            runs_with_rework=c["runs_with_rework"],
            refusals=c["refusals"],
        )


def _step_rows(
    step_visits: Mapping[tuple[str, str], list[tuple[_Visit, int]]],
    rejections: Mapping[tuple[str, str], int],
    infos: Mapping[str, SopInfo],
) -> Iterable[StepStats]:
    order = {key: n for n, key in enumerate(step_visits)}  # first entered, across runs
    for key in sorted(step_visits, key=lambda k: (k[0], order[k])):
        sop_id, state = key
        visits = step_visits[key]
        durations = [(end - v.entered) / _US for v, end in visits]
        sums = dict.fromkeys(_PARTS, 0)
        for visit, end in visits:
            for name, value in _parts(visit, end).items():
                sums[name] += value
        count = len(visits)
        info = infos.get(sop_id)
        kind = visits[-1][0].kind
        p50, p90 = percentile(durations, 0.5), percentile(durations, 0.9)
        assert p50 is not None  # every key has at least one visit
        assert p90 is not None
        yield StepStats(
            sop=sop_id,
            step=state,
            title=info.titles.get(state) if info is not None else None,
            kind=kind,
            visits=count,
            rework=sum(1 for v, _ in visits if v.visit > 1 and v.kind in _HUMAN),
            rejections=rejections.get(key, 0),
            p50=p50,
            p90=p90,
            mean=sum(durations) / count,
            waiting=sums["waiting"] / _US / count,
            working=sums["working"] / _US / count,
            with_people=sums["with_people"] / _US / count,
            timer=sums["timer"] / _US / count,
            sub_run=sums["sub_run"] / _US / count,
        )


def _slowest(steps: Sequence[StepStats]) -> Iterable[StepStats]:
    best: dict[str, StepStats] = {}
    for row in steps:
        if row.kind not in _SLOWEST_KINDS:
            continue
        held = best.get(row.sop)
        if held is None or (row.p50, row.p90, held.step) > (held.p50, held.p90, row.step):
            best[row.sop] = row
    return (best[sop_id] for sop_id in sorted(best))


def _ordered(
    tallies: Mapping[str, _Tally],
    known: Sequence[str],
    title: Any,
) -> Iterable[OnTime]:
    rank = {who: n for n, who in enumerate(known)}
    for who in sorted(tallies, key=lambda w: (rank.get(w, len(rank)), w)):
        yield tallies[who].frozen(who, title(who))


# ---------------------------------------------------------------- reading a ledger


def report(
    ledger: Ledger,
    *,
    since: datetime,
    until: datetime,
    sop: str | None = None,
    roster: Roster | None = None,
) -> Report:
    """Read the runs that overlap [since, until) (and `sop` only, if given) and analyse
    them. Titles come from the definitions the runs started with (the newest run's, per
    SOP); a definition that cannot be read only loses its titles."""
    lo, hi = _to_us(since), _to_us(until)
    histories: list[RunHistory] = []
    newest: dict[str, str] = {}
    for record in ledger.runs(sop_id=sop):
        if iso_to_us(record.started_at) >= hi:
            continue
        if record.status != "running" and iso_to_us(record.updated_at) < lo:
            continue  # finished before the window opened
        histories.append(RunHistory(record.run_id, record.sop_id, ledger.events(record.run_id)))
        newest[record.sop_id] = record.def_hash
    infos = {sop_id: _sop_info(ledger, def_hash) for sop_id, def_hash in newest.items()}
    return analyse(histories, roster or EMPTY, since=since, until=until, sops=infos, sop=sop)


def _sop_info(ledger: Ledger, def_hash: str) -> SopInfo:
    from storeops.errors import StoreopsError
    from storeops.ledger import LedgerError
    from storeops.loader import from_bundle
    from storeops.spec import all_states

    try:
        spec = from_bundle(ledger.get_definition(def_hash)).spec
    except (LedgerError, StoreopsError, ValueError, KeyError):
        return SopInfo()
    states = all_states(spec)
    return SopInfo(
        title=spec.title,
        kinds={sid: str(st.type) for sid, st in states.items()},
        titles={sid: getattr(st, "title", None) for sid, st in states.items()},
    )


# ---------------------------------------------------------------- tables


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table: the CSV/JSON key, its headings, and how it is shown."""

    key: str
    en: str
    zh: str
    kind: str = "text"  # text | int | seconds | rate

    def heading(self, lang: str) -> str:
        return self.zh if lang == "zh-CN" else self.en


def _c(key: str, en: str, zh: str, kind: str = "int") -> Column:
    return Column(key, en, zh, kind)


_SOP = _c("sop", "SOP", "SOP", "text")
_TITLE = _c("title", "Title", "名称", "text")
_STEP_COLUMNS = (
    _SOP,
    _c("step", "Step", "步骤", "text"),
    _TITLE,
    _c("kind", "Kind", "类型", "text"),
    _c("visits", "Visits", "次数"),
)
_ON_TIME = (
    _c("tasks", "Tasks", "任务数"),
    _c("on_time", "On time", "按时"),
    _c("late", "Late", "逾期"),
    _c("timed_out", "Timed out", "超时"),
    _c("breaches", "Breaches", "违约"),
    _c("on_time_rate", "On-time rate", "按时率", "rate"),
    _c("escalated", "Escalated", "已升级"),
    _c("open_overdue", "Open overdue", "未完成已逾期"),
)
_COLUMNS: Final[dict[str, tuple[Column, ...]]] = {
    "cycle": (
        _SOP,
        _TITLE,
        _c("started", "Started", "启动"),
        _c("finished", "Finished", "结束"),
        _c("succeeded", "Succeeded", "成功"),
        _c("failed", "Failed", "失败"),
        _c("open", "Open", "进行中"),
        _c("p50", "Cycle p50", "周期 p50", "seconds"),
        _c("p90", "Cycle p90", "周期 p90", "seconds"),
        _c("rejections", "Rejections", "驳回"),
        _c("rework", "Rework", "返工"),
        _c("runs_with_rework", "Runs with rework", "返工的运行"),
        _c("refusals", "Refusals", "拒绝操作"),
    ),
    "steps": (
        *_STEP_COLUMNS,
        _c("rework", "Rework", "返工"),
        _c("rejections", "Rejections", "驳回"),
        _c("p50", "p50", "p50", "seconds"),
        _c("p90", "p90", "p90", "seconds"),
        _c("mean", "Mean", "平均", "seconds"),
        _c("waiting", "Waiting", "等待", "seconds"),
        _c("working", "Working", "处理", "seconds"),
        _c("with_people", "With people", "在人手中", "seconds"),
        _c("timer", "Timer", "定时等待", "seconds"),
        _c("sub_run", "Sub-run", "子流程", "seconds"),
    ),
    "slowest": (
        *_STEP_COLUMNS,
        _c("p50", "p50", "p50", "seconds"),
        _c("p90", "p90", "p90", "seconds"),
    ),
    "roles": (_c("role", "Role", "角色", "text"), _TITLE, *_ON_TIME),
    "people": (
        _c("person", "Person", "人员", "text"),
        _c("name", "Name", "姓名", "text"),
        *_ON_TIME,
    ),
}

_TABLE_TITLES: Final = {
    "cycle": ("Cycle time per SOP", "各 SOP 周期"),
    "steps": ("Time per step (means per visit)", "各步骤用时（每次平均）"),
    "slowest": ("Slowest step of each SOP (p50)", "各 SOP 最慢步骤（p50）"),
    "roles": ("On time per role", "各角色按时率"),
    "people": ("On time per person", "各人员按时率"),
}

_KIND_NAMES: Final = {
    "task": "任务",
    "approval": "审批",
    "action": "自动操作",
    "notify": "通知",
    "call": "子流程",
    "wait": "等待",
}


def columns(table: str) -> tuple[Column, ...]:
    """The columns of `table`; ValueError naming the tables for an unknown one."""
    try:
        return _COLUMNS[table]
    except KeyError:
        raise ValueError(f"no report table {table!r}; the tables are {', '.join(TABLES)}") from None


def table_title(table: str, lang: str = "en") -> str:
    en, zh = _TABLE_TITLES[table]
    return zh if lang == "zh-CN" else en


def table_rows(report: Report, table: str, lang: str = "en") -> list[dict[str, Any]]:
    """The rows of `table` as plain values keyed by column key: numbers stay numbers
    (seconds, rates 0–1, None when undefined), titles localized to `lang`."""
    cols = columns(table)
    source: Sequence[Any] = getattr(report, table)
    rows: list[dict[str, Any]] = []
    for item in source:
        row: dict[str, Any] = {}
        for col in cols:
            if col.key in ("role", "person"):
                value: Any = item.who
            elif col.key in ("title", "name"):
                value = localize(item.title, lang) or (
                    item.who if isinstance(item, OnTime) else getattr(item, "step", item.sop)
                )
            else:
                value = getattr(item, col.key)
            row[col.key] = value
        rows.append(row)
    return rows


def format_cell(column: Column, value: Any, lang: str = "en") -> str:
    """A value as a person reads it: durations `2h30m`, rates `66.7%`, `–` for none."""
    if value is None:
        return "–"
    if column.kind == "seconds":
        return format_duration(float(value))
    if column.kind == "rate":
        return f"{float(value) * 100:.1f}%"
    if column.key == "kind" and lang == "zh-CN":
        return _KIND_NAMES.get(str(value), str(value))
    return str(value)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(round(value, 4))
    return str(value)


def report_to_csv(report: Report, table: str, lang: str = "en") -> str:
    """One table as CSV (RFC 4180, `\\r\\n` line ends, no BOM): a header of column keys,
    then one line per row; seconds and 0–1 rates as plain numbers (4 decimals at most),
    empty for none. Titles are in `lang`."""
    cols = columns(table)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([c.key for c in cols])
    for row in table_rows(report, table, lang):
        writer.writerow([_csv_value(row[c.key]) for c in cols])
    return buffer.getvalue()


def report_to_dict(report: Report, lang: str = "en") -> dict[str, Any]:
    """The whole report as JSON-ready data: the window and every table's rows."""
    return {
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "sop": report.sop,
        "runs": report.runs,
        "tables": {name: table_rows(report, name, lang) for name in TABLES},
    }


def _width(text: str) -> int:
    """Terminal columns: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * (width - _width(text))
    return gap + text if right else text + gap


def report_to_text(report: Report, lang: str = "en", tables: Sequence[str] = TABLES) -> str:
    """Aligned tables for a terminal, headings in `lang` (CJK counted two columns wide)."""
    zh = lang == "zh-CN"
    sop = f" · SOP {report.sop}" if report.sop else ""
    head = (
        f"{'SOP 运行报告' if zh else 'SOP report'}  "
        f"{_day(report.since)} → {_day(report.until)}{sop}  "
        f"({report.runs} {'次运行' if zh else 'run(s)'})"
    )
    lines = [head]
    for name in tables:
        cols = columns(name)
        rows = [
            [format_cell(c, r[c.key], lang) for c in cols] for r in table_rows(report, name, lang)
        ]
        lines += ["", table_title(name, lang)]
        if not rows:
            lines.append("  " + ("（无数据）" if zh else "(nothing in this window)"))
            continue
        headings = [c.heading(lang) for c in cols]
        widths = [
            max(_width(x) for x in [h, *(r[i] for r in rows)]) for i, h in enumerate(headings)
        ]
        numeric = [c.kind != "text" for c in cols]
        for cells in [headings, *rows]:
            line = "  ".join(_pad(cell, widths[i], numeric[i]) for i, cell in enumerate(cells))
            lines.append("  " + line.rstrip())
    return "\n".join(lines) + "\n"


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- charts


def report_charts(report: Report, lang: str = "en") -> dict[str, str]:
    """The report's charts as standalone SVG documents, by name: `cycle` (p50/p90 per
    SOP), `slowest` (slowest step per SOP), `steps` (waiting vs working per step),
    `roles` and `people` (on-time rate with breach counts)."""
    from storeops import charts

    zh = lang == "zh-CN"

    def label(row: Mapping[str, Any], *keys: str) -> str:
        return " · ".join(str(row[k]) for k in keys if row.get(k))

    cycle = table_rows(report, "cycle", lang)
    slowest = table_rows(report, "slowest", lang)
    steps = table_rows(report, "steps", lang)
    keep = sorted(range(len(steps)), key=lambda i: (-steps[i]["mean"], i))[:STEPS_CHARTED]
    charted = [steps[i] for i in sorted(keep)]  # the slowest, in process order
    part_names = {
        "waiting": ("等待", "waiting"),
        "working": ("处理", "working"),
        "with_people": ("在人手中", "with people"),
        "timer": ("定时等待", "timer"),
        "sub_run": ("子流程", "sub-run"),
    }
    return {
        "cycle": charts.bar_chart(
            "各 SOP 周期（p50 / p90）" if zh else "Cycle time per SOP (p50 / p90)",
            [charts.Bar(label(r, "title"), (r["p50"] or 0.0, r["p90"] or 0.0)) for r in cycle],
            series=("p50", "p90"),
            unit="duration",
        ),
        "slowest": charts.bar_chart(
            table_title("slowest", lang),
            [charts.Bar(label(r, "sop", "title"), (r["p50"], r["p90"])) for r in slowest],
            series=("p50", "p90"),
            unit="duration",
        ),
        "steps": charts.stacked_bar_chart(
            (
                "各步骤等待与处理（每次平均）"
                if zh
                else "Waiting vs working per step (mean per visit)"
            )
            + (
                f"{'，最慢的 ' if zh else ', the '}{STEPS_CHARTED}{'' if zh else ' slowest'}"
                if len(steps) > STEPS_CHARTED
                else ""
            ),
            [charts.Bar(label(r, "sop", "title"), tuple(r[p] for p in _PARTS)) for r in charted],
            series=tuple(part_names[p][0 if zh else 1] for p in _PARTS),
            unit="duration",
        ),
        "roles": charts.rate_chart(
            table_title("roles", lang),
            [
                charts.Rate(r["title"], r["on_time_rate"], r["breaches"], r["tasks"])
                for r in table_rows(report, "roles", lang)
            ],
            lang=lang,
        ),
        "people": charts.rate_chart(
            table_title("people", lang),
            [
                charts.Rate(
                    r["name"] if r["name"] == r["person"] else f"{r['name']} ({r['person']})",
                    r["on_time_rate"],
                    r["breaches"],
                    r["tasks"],
                )
                for r in table_rows(report, "people", lang)
            ],
            lang=lang,
        ),
    }


# ---------------------------------------------------------------- command line


def parse_window(
    since: str | None, until: str | None, *, now: datetime | None = None, days: int = 7
) -> tuple[datetime, datetime]:
    """The window [since, until) from command-line text. A date means midnight UTC, and
    `until` DATE includes that whole day; an instant may carry its offset
    (`2026-11-09T09:00+08:00`). Defaults: until now, since `days` before until.
    ValueError says what was found and what is accepted."""
    try:
        end = _moment(until, "--until", inclusive_day=True) if until else None
        if end is None:
            end = (now or datetime.now(UTC)).astimezone(UTC)
        start = (
            _moment(since, "--since", inclusive_day=False) if since else end - timedelta(days=days)
        )
    except OverflowError:  # 0001-01-01 minus a week, 9999-12-31 plus its day
        raise ValueError(
            f"the window --since {since or '-'} --until {until or '-'} reaches past the "
            "calendar's range (years 1 to 9999)"
        ) from None
    if start >= end:
        raise ValueError(
            f"the window is empty: --since {start.isoformat()} is not before "
            f"--until {end.isoformat()}"
        )
    return start, end


def _moment(text: str, option: str, *, inclusive_day: bool) -> datetime:
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            moment = datetime.combine(day, time(0), tzinfo=UTC)
            return moment + timedelta(days=1) if inclusive_day else moment
        found = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{option} {text!r} is not a date or an instant; give 2026-11-09 or "
            "2026-11-09T09:00+08:00"
        ) from None
    return (found if found.tzinfo else found.replace(tzinfo=UTC)).astimezone(UTC)


def cmd_report(args: argparse.Namespace, cfg: Settings) -> int:
    """`storeops report`: the analytics over a window, as text, CSV (one table) or JSON.

    Reads `args.since`, `args.until`, `args.sop`, `args.format`, `args.table` (each may be
    missing or None) and the language of `cfg`. Exit 0, or 2 for bad options.
    """
    import sys

    from storeops.errors import ConfigError
    from storeops.ledger import open_ledger

    fmt = getattr(args, "format", None) or "text"
    table = getattr(args, "table", None)
    try:
        since, until = parse_window(getattr(args, "since", None), getattr(args, "until", None))
        if table is not None:
            columns(table)
    except ValueError as exc:
        print(f"storeops report: error: {exc}", file=sys.stderr)
        return 2
    if fmt == "csv" and table is None:
        print(
            f"storeops report: error: --format csv writes one table; add --table "
            f"{{{','.join(TABLES)}}}",
            file=sys.stderr,
        )
        return 2
    url = cfg.ledger_url
    if "://" not in url and url != ":memory:" and not Path(url).is_file():
        raise ConfigError(f"no ledger at {url}; give --ledger PATH (or STOREOPS_LEDGER)")
    roster = cfg.roster() if cfg.roster_path.is_file() else EMPTY
    ledger = open_ledger(url)
    try:
        found = report(
            ledger, since=since, until=until, sop=getattr(args, "sop", None), roster=roster
        )
    finally:
        ledger.close()
    lang = cfg.locale
    if fmt == "csv":
        assert table is not None
        sys.stdout.write(report_to_csv(found, table, lang))
    elif fmt == "json":
        data = report_to_dict(found, lang)
        if table is not None:
            data["tables"] = {table: data["tables"][table]}
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(report_to_text(found, lang, (table,) if table else TABLES))
    return 0


def _check_fields() -> None:
    # Every non-text column must be an attribute of its row type: a renamed field would
    # otherwise only fail when someone asks for that table.
    names = {
        "cycle": {f.name for f in fields(SopCycle)},
        "steps": {f.name for f in fields(StepStats)},
        "slowest": {f.name for f in fields(StepStats)},
        "roles": {f.name for f in fields(OnTime)} | {"judged", "breaches", "on_time_rate"},
        "people": {f.name for f in fields(OnTime)} | {"judged", "breaches", "on_time_rate"},
    }
    for table, cols in _COLUMNS.items():
        for col in cols:
            if col.key not in names[table] | {"role", "person", "name", "title"}:
                raise RuntimeError(f"analytics: column {col.key!r} of {table} has no field")


_check_fields()
