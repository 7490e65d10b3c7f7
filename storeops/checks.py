"""Graph and cross-reference checks of a parsed SOP: targets, reachability, ends, roles.

Pure core: standard library and the spec models only. Each finding carries a YAML path;
the loader turns paths into line and column. Findings list the offenders and what is
allowed, and suggest the likely fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from storeops import spec as s
from storeops.diagnostics import Severity, listing, suggest
from storeops.durations import format_duration
from storeops.operations import OPERATIONS

Path_ = tuple[str | int, ...]
_RESERVED = frozenset({"params", "vars", "steps", "run", "index"})


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    message: str
    path: Path_
    at_key: bool = False
    severity: Severity = "error"


def check_spec(sop: s.SopSpec) -> list[Finding]:
    """All graph and reference problems of one SOP, in document order."""
    found: list[Finding] = []
    owners: dict[str, Path_] = {}
    for path, states, _owner in s.walk_scopes(sop.states):
        for sid in states:
            here = (*path, sid)
            if sid in owners:
                found.append(
                    Finding(
                        "SOP108",
                        f"state id {sid!r} is already used at {_dotted(owners[sid])}; "
                        "state ids must be unique across the SOP",
                        here,
                        at_key=True,
                    )
                )
            else:
                owners[sid] = here
    for path, states, owner in s.walk_scopes(sop.states):
        start, start_path = _scope_start(sop, path)
        found += _check_scope(states, path, start, start_path, owner, owners)
    found += _check_states(sop)
    return found


def _scope_start(sop: s.SopSpec, states_path: Path_) -> tuple[str, Path_]:
    if states_path == ("states",):
        return sop.start, ("start",)
    node: Any = sop
    for part in states_path[:-1]:
        node = node.get(part) if isinstance(node, dict) else getattr(node, str(part))
    return node.start, (*states_path[:-1], "start")


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def _edges(state: Any) -> Iterator[tuple[str, str]]:
    yield from s.transitions(state)


def _check_scope(
    states: dict[str, Any],
    path: Path_,
    start: str,
    start_path: Path_,
    owner: str | None,
    owners: dict[str, Path_],
) -> list[Finding]:
    found: list[Finding] = []
    known = list(states)
    where = "" if owner is None else f" inside {owner!r}"
    if start not in states:
        found.append(
            Finding(
                "SOP106",
                f"start {start!r} is not a state{where}; known states: {listing(known)}"
                + suggest(start, known),
                start_path,
            )
        )
    for sid, state in states.items():
        for field, target in _edges(state):
            if target in states:
                continue
            field_path = (*path, sid, *_split(field))
            if target in owners:
                found.append(
                    Finding(
                        "SOP107",
                        f"state {sid!r} has {field} {target!r}, which belongs to another "
                        f"scope; a branch ends with a succeed or fail state, and the "
                        f"enclosing state's `next` continues",
                        field_path,
                    )
                )
            else:
                found.append(
                    Finding(
                        "SOP103",
                        f"state {sid!r} has {field} {target!r}, which is not a state{where}; "
                        f"known states: {listing(known)}" + suggest(target, known),
                        field_path,
                    )
                )
    if start not in states:
        return found
    reachable = _reach(start, states)
    for sid in states:
        if sid not in reachable:
            found.append(
                Finding(
                    "SOP110",
                    f"state {sid!r} is unreachable: no transition from {start!r} leads to it; "
                    "link it from another state or remove it",
                    (*path, sid),
                    at_key=True,
                )
            )
    finishing = _finishing(states)
    for sid in states:
        if sid in reachable and sid not in finishing:
            found.append(
                Finding(
                    "SOP111",
                    f"from state {sid!r} no path reaches a succeed or fail state{where} "
                    "(a loop with no exit); add a transition to an end",
                    (*path, sid),
                    at_key=True,
                )
            )
    if owner is not None and not (finishing & reachable):
        found.append(
            Finding(
                "SOP112",
                f"the states{where} never reach a succeed or fail state, so {owner!r} "
                "can never finish",
                path,
            )
        )
    return found


def _split(field: str) -> Path_:
    return tuple(int(p) if p.isdigit() else p for p in field.split("."))


def _resolve(target: str, states: dict[str, Any]) -> str:
    """A misspelt target counts as its likely meaning, so one typo is reported once."""
    if target in states:
        return target
    close = difflib.get_close_matches(target, list(states), n=1, cutoff=0.6)
    return close[0] if close else target


def _reach(start: str, states: dict[str, Any]) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for _field, raw in _edges(states[todo.pop()]):
            target = _resolve(raw, states)
            if target in states and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _finishing(states: dict[str, Any]) -> set[str]:
    """States from which some path reaches an end (timeouts that fail count as ends)."""
    done = {sid for sid, st in states.items() if s.is_end(st)}
    done |= {sid for sid, st in states.items() if s.is_human(st) and st.on_timeout == "fail"}
    changed = True
    while changed:
        changed = False
        for sid, state in states.items():
            if sid in done:
                continue
            if any(_resolve(t, states) in done for _f, t in _edges(state)):
                done.add(sid)
                changed = True
    return done


def _check_states(sop: s.SopSpec) -> list[Finding]:
    found: list[Finding] = []
    every = s.all_states(sop)
    declared = set(sop.roles)
    for path, states, _owner in s.walk_scopes(sop.states):
        for sid, state in states.items():
            here = (*path, sid)
            if s.is_human(state):
                found += _check_human(sid, state, here, declared, every)
            if isinstance(state, s.ActionState) and state.uses not in OPERATIONS:
                found.append(
                    Finding(
                        "SOP153",
                        f"state {sid!r} uses {state.uses!r}, which is not a known "
                        f"operation; known: {listing(sorted(OPERATIONS), 8)}"
                        + suggest(state.uses, OPERATIONS),
                        (*here, "uses"),
                    )
                )
            if isinstance(state, s.ActionState | s.CallState):
                for error in state.catch:
                    if error not in s.ERROR_CLASSES:
                        found.append(
                            Finding(
                                "SOP152",
                                f"catch names {error!r}, which is not an error class; known: "
                                f"{listing(s.ERROR_CLASSES)}" + suggest(error, s.ERROR_CLASSES),
                                (*here, "catch", error),
                                at_key=True,
                            )
                        )
            if isinstance(state, s.MapState) and state.item_as in _RESERVED:
                found.append(
                    Finding(
                        "SOP136",
                        f"map {sid!r} names its item {state.item_as!r}, which hides the "
                        f"built-in name; choose another item_as (reserved: "
                        f"{', '.join(sorted(_RESERVED))})",
                        (*here, "item_as"),
                    )
                )
            if isinstance(state, s.NotifyState):
                for index, target in enumerate(state.to):
                    if not target.startswith("channel:") and target not in declared:
                        found.append(_undeclared(sid, target, (*here, "to", index), declared))
            joins = isinstance(state, s.ParallelState) and isinstance(state.join, int)
            if joins and state.join > len(state.branches):
                found.append(
                    Finding(
                        "SOP112",
                        f"parallel {sid!r} joins on {state.join} branches but has only "
                        f"{len(state.branches)}",
                        (*here, "join"),
                    )
                )
    return found


def _undeclared(sid: str, role: str, path: Path_, declared: set[str]) -> Finding:
    return Finding(
        "SOP120",
        f"state {sid!r} names role {role!r}, which is not in the SOP's roles "
        f"({listing(sorted(declared)) or 'none declared'}); add it to `roles`"
        + suggest(role, declared),
        path,
    )


def _check_human(
    sid: str, state: Any, here: Path_, declared: set[str], every: dict[str, Any]
) -> list[Finding]:
    found: list[Finding] = []
    if state.role not in declared:
        found.append(_undeclared(sid, state.role, (*here, "role"), declared))
    if state.escalate is not None and state.escalate.to not in declared:
        found.append(_undeclared(sid, state.escalate.to, (*here, "escalate", "to"), declared))
    titles = state.title.values() if isinstance(state.title, dict) else [state.title]
    if any("{{" in text or "{%" in text for text in titles):
        found.append(
            Finding(
                "SOP137",
                f"state {sid!r} has {{{{ }}}} in its title, which is the same for every run; "
                "move the run's values to `about:` (shown after the title), e.g. "
                "about: '{{ params.sku }}'",
                (*here, "title"),
            )
        )
    limit = state.timeout_after
    after = state.escalate.after if state.escalate is not None else None
    # (spans given by expressions are known only when a run gets there)
    if isinstance(limit, float | int) and isinstance(after, float | int) and after >= limit:
        found.append(
            Finding(
                "SOP141",
                f"state {sid!r} escalates after {format_duration(after)} but times "
                f"out after {format_duration(limit)}, so the escalation never happens; set a "
                "longer `timeout`",
                (*here, "escalate", "after"),
                severity="warning",
            )
        )
    if isinstance(state, s.ApprovalState) and state.four_eyes is not None:
        other = every.get(state.four_eyes)
        if other is None or not s.is_human(other) or state.four_eyes == sid:
            found.append(
                Finding(
                    "SOP150",
                    f"four_eyes of {sid!r} names {state.four_eyes!r}, which is not an earlier "
                    "task or approval; name the step whose completer may not approve",
                    (*here, "four_eyes"),
                )
            )
    return found
