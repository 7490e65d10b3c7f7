"""Load and validate SOP and roster files, reporting every problem with its position.

Edge module: YAML (yamlsource), Jinja2 (expressions, templates) and files. The one entry
point for definitions is `load_sop`; `validate_paths` runs it over files and folders.
Must not import Prefect, httpx or a database driver.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from storeops import spec as s
from storeops.checks import Finding, check_spec
from storeops.diagnostics import Diagnostic, listing, sort_key, suggest
from storeops.errors import DefinitionError, ExpressionError
from storeops.expressions import Expressions
from storeops.ledger.canonical import canonical_json, sha256_hex
from storeops.roster import Roster
from storeops.templates import TemplateLibrary
from storeops.yamlsource import YamlDoc, load_yaml, load_yaml_text

Path_ = tuple[str | int, ...]
ROSTER_NAMES = ("team.yaml", "team.yml")
#: The monitoring probes file beside the SOPs; `connectors.probes` checks it.
MONITOR_NAMES = ("monitors.yaml", "monitors.yml")
#: Files in an SOP folder that are not SOPs.
NOT_SOPS = frozenset(ROSTER_NAMES + MONITOR_NAMES)
_BASE_NAMES = frozenset({"params", "vars", "steps", "run"})


@dataclass
class LoadedSop:
    """A valid SOP plus what a run must pin: its source and the templates it uses."""

    spec: s.SopSpec
    file: str
    source: str
    templates: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)

    def bundle(self) -> bytes:
        return canonical_json(
            {
                "format": 1,
                "file": Path(self.file).name,
                "sop": self.source,
                "templates": self.templates,
            }
        )

    @property
    def def_hash(self) -> str:
        return sha256_hex(self.bundle())


def from_bundle(bundle: bytes) -> LoadedSop:
    """Rebuild the exact definition a run started with (templates included)."""
    import json

    data = json.loads(bundle)
    doc, problems = load_yaml_text(data["sop"], data["file"])
    if doc is None:
        raise DefinitionError(problems)
    sop = s.SopSpec.model_validate(doc.data)
    return LoadedSop(sop, data["file"], data["sop"], data.get("templates", {}))


class Checker:
    """Validates SOP files against the language, the graph rules, a roster and templates."""

    def __init__(
        self,
        *,
        roster: Roster | None = None,
        templates: TemplateLibrary | None = None,
        expressions: Expressions | None = None,
        library: Path | None = None,
    ) -> None:
        self.roster = roster
        self.library = library
        self.templates = templates
        self.expressions = expressions or Expressions()

    def load(self, path: str | os.PathLike[str]) -> tuple[LoadedSop | None, list[Diagnostic]]:
        doc, problems = load_yaml(path)
        if doc is None:
            return None, problems
        return self.load_doc(doc, stem=Path(path).stem)

    def load_doc(
        self, doc: YamlDoc, *, stem: str | None = None
    ) -> tuple[LoadedSop | None, list[Diagnostic]]:
        loaded, found = self._load_doc(doc, stem=stem)
        if doc.problems:
            found = sorted([*doc.problems, *found], key=sort_key)
            return None, found
        return loaded, found

    def _load_doc(
        self, doc: YamlDoc, *, stem: str | None = None
    ) -> tuple[LoadedSop | None, list[Diagnostic]]:
        if not isinstance(doc.data, dict):
            kind = type(doc.data).__name__ if doc.data is not None else "nothing"
            return None, [
                Diagnostic(
                    "SOP006",
                    f"the top level is {kind}, but an SOP is a mapping with id, version, title, "
                    "start and states",
                    doc.file,
                )
            ]
        structural: list[Diagnostic] = []
        stubs: list[Path_] = []
        try:
            sop = s.SopSpec.model_validate(doc.data)
        except ValidationError as exc:
            structural = _pydantic_problems(exc, doc)
            repaired = _repair(doc.data, exc, stubs)
            try:
                sop = s.SopSpec.model_validate(repaired)
            except ValidationError:
                return None, sorted(structural, key=sort_key)
        findings = check_spec(sop)
        if stem is not None and sop.id != stem:
            findings.append(
                Finding(
                    "SOP105",
                    f"id {sop.id!r} differs from the file name {stem!r}; rename the file to "
                    f"{sop.id}.yaml or set id: {stem}",
                    ("id",),
                )
            )
        findings += self._expression_findings(sop)
        templates, template_findings = self._template_findings(sop)
        findings += template_findings
        findings += self._roster_findings(sop)
        findings += self._call_findings(sop)
        stub_ids = {str(p[-1]) for p in stubs}
        findings = [
            f
            for f in findings
            if not any(f.path[: len(p)] == p for p in stubs)
            and not (f.code == "SOP150" and any(f"names {i!r}" in f.message for i in stub_ids))
        ]
        diagnostics = sorted([*structural, *(_at(doc, f) for f in findings)], key=sort_key)
        errors = [d for d in diagnostics if d.severity == "error"]
        if errors:
            return None, diagnostics
        return LoadedSop(sop, doc.file, doc.text, templates, diagnostics), diagnostics

    # ------------------------------------------------------------ expressions

    def _expression_findings(self, sop: s.SopSpec) -> list[Finding]:
        found: list[Finding] = []
        saved = {"last_error"}
        for _path, states, _owner in s.walk_scopes(sop.states):
            for state in states.values():
                name = getattr(state, "save_as", None)
                if name:
                    saved.add(name)
        every = s.all_states(sop)
        for source, path, names in self._expressions(sop):
            if isinstance(source, ExpressionError):
                found.append(Finding("SOP132", str(source), path))
                continue
            try:
                compiled = self.expressions.compile(source)
            except ExpressionError as exc:
                found.append(Finding("SOP132", str(exc), path))
                continue
            # Jinja's globals (range, dict, namespace…) are not available when a run
            # evaluates an expression, so they are not allowed here either.
            allowed = set(names)
            for name in sorted(compiled.names - allowed):
                found.append(
                    Finding(
                        "SOP133",
                        f"expression {source!r} reads {name!r}, which is not defined here; "
                        f"available: {listing(sorted(allowed))}" + suggest(name, allowed),
                        path,
                    )
                )
            for root, attr in compiled.attributes:
                known: Iterable[str] | None = None
                if root == "params":
                    known = sop.params
                elif root == "steps":
                    known = every
                elif root == "vars":
                    known = saved
                if known is not None and attr not in known:
                    what = {"params": "parameter", "steps": "state", "vars": "saved result"}[root]
                    found.append(
                        Finding(
                            "SOP133",
                            f"expression {source!r} reads {root}.{attr}, but there is no {what} "
                            f"{attr!r}; known: {listing(sorted(known)) or 'none'}"
                            + suggest(attr, known),
                            path,
                        )
                    )
        return found

    def _expressions(
        self, sop: s.SopSpec
    ) -> Iterator[tuple[str | ExpressionError, Path_, frozenset[str]]]:
        if sop.business_key:  # evaluated before the run exists: parameters only
            yield sop.business_key, ("business_key",), frozenset({"params"})
        for path, states, _owner in s.walk_scopes(sop.states):
            extra = _BASE_NAMES | _map_names(sop, path)
            for sid, state in states.items():
                here = (*path, sid)
                if isinstance(state, s.ChoiceState):
                    for i, choice in enumerate(state.choices):
                        yield choice.when, (*here, "choices", i, "when"), extra
                elif isinstance(state, s.MapState):
                    yield state.items, (*here, "items"), extra
                elif isinstance(state, s.WaitState) and state.until:
                    yield state.until, (*here, "until"), extra
                elif isinstance(state, s.WaitState) and isinstance(state.for_, str):
                    yield state.for_, (*here, "for"), extra
                values: dict[str, Any] = {}
                key = "with"
                if isinstance(state, s.ActionState | s.CallState):
                    values = state.with_
                elif isinstance(state, s.SucceedState):
                    values, key = state.output, "output"
                elif isinstance(state, s.TaskState | s.ApprovalState):
                    if state.about:
                        yield from self._about_sources(state.about, (*here, "about"), extra)
                    spans = {
                        ("due",): state.due,
                        ("timeout",): state.timeout,
                        ("remind", "every"): state.remind.every if state.remind else None,
                        ("escalate", "after"): state.escalate.after if state.escalate else None,
                    }
                    for where, span in spans.items():
                        if isinstance(span, str):
                            yield span, (*here, *where), extra
                for name, value in values.items():
                    yield from self._sources(value, (*here, key, name), extra)

    def _about_sources(
        self, about: Any, path: Path_, extra: frozenset[str]
    ) -> Iterator[tuple[str | ExpressionError, Path_, frozenset[str]]]:
        """The expressions in a human step's `about` (`{{ params.inquiry_id }}`)."""
        for lang, text in about.items() if isinstance(about, dict) else [(None, about)]:
            yield from self._sources(text, path if lang is None else (*path, lang), extra)

    def _sources(
        self, value: Any, path: Path_, extra: frozenset[str]
    ) -> Iterator[tuple[str | ExpressionError, Path_, frozenset[str]]]:
        try:
            sources = self.expressions.sources_in(value)
        except ExpressionError as exc:
            yield exc, path, extra
            return
        for source in sources:
            yield source, path, extra

    # ------------------------------------------------------------ templates, roster

    def _template_findings(self, sop: s.SopSpec) -> tuple[dict[str, dict[str, str]], list[Finding]]:
        used: dict[str, list[Path_]] = {}
        for path, states, _owner in s.walk_scopes(sop.states):
            for sid, state in states.items():
                instructions = getattr(state, "instructions", None)
                if isinstance(instructions, s.Template):
                    used.setdefault(instructions.template, []).append(
                        (*path, sid, "instructions", "template")
                    )
                if isinstance(state, s.NotifyState) and state.template:
                    used.setdefault(state.template, []).append((*path, sid, "template"))
                if isinstance(state, s.ActionState) and state.uses == "render.template":
                    name = state.with_.get("template")
                    if isinstance(name, str) and "{{" not in name:
                        used.setdefault(name, []).append((*path, sid, "with", "template"))
        pinned: dict[str, dict[str, str]] = {}
        found: list[Finding] = []
        if self.templates is None:
            return pinned, found
        for name, paths in used.items():
            problems = self.templates.problems(name)
            for code, message, _line in problems:
                found += [Finding(code, message, p) for p in paths]
            if not problems:
                pinned[name] = {
                    loc: self.templates.source(name, loc) for loc in self.templates.locales_of(name)
                }
        return pinned, found

    def _call_findings(self, sop: s.SopSpec) -> list[Finding]:
        """Sub-SOPs a `call` names must exist in the library, at the pinned version."""
        if self.library is None:
            return []
        found: list[Finding] = []
        for path, states, _owner in s.walk_scopes(sop.states):
            for sid, state in states.items():
                if not isinstance(state, s.CallState):
                    continue
                target = self.library / f"{state.sop}.yaml"
                if not target.is_file():
                    known = sorted(p.stem for p in self.library.glob("*.yaml") if not is_roster(p))
                    found.append(
                        Finding(
                            "SOP154",
                            f"call {sid!r} names SOP {state.sop!r}, which is not in "
                            f"{self.library}; known: {listing(known)}" + suggest(state.sop, known),
                            (*path, sid, "sop"),
                        )
                    )
                    continue
                if state.version is None:
                    continue
                doc, _problems = load_yaml(target)
                version = doc.data.get("version") if doc and isinstance(doc.data, dict) else None
                if version != state.version:
                    found.append(
                        Finding(
                            "SOP154",
                            f"call {sid!r} pins {state.sop} v{state.version}, but the library "
                            f"has v{version}; update the pin or the sub-SOP",
                            (*path, sid, "version"),
                        )
                    )
        return found

    def _roster_findings(self, sop: s.SopSpec) -> list[Finding]:
        if self.roster is None:
            return []
        found: list[Finding] = []
        staffed = {role for person in self.roster.people.values() for role in person.roles}
        for path, states, _owner in s.walk_scopes(sop.states):
            for sid, state in states.items():
                roles: list[tuple[str, Path_]] = []
                if s.is_human(state):
                    roles.append((state.role, (*path, sid, "role")))
                    if state.escalate is not None:
                        roles.append((state.escalate.to, (*path, sid, "escalate", "to")))
                if isinstance(state, s.ApprovalState):
                    holders = self.roster.holders(state.role)
                    if holders and state.approvals > len(holders):
                        found.append(
                            Finding(
                                "SOP122",
                                f"approval {sid!r} needs {state.approvals} approvers but only "
                                f"{len(holders)} people hold role {state.role!r} "
                                f"({', '.join(holders)}); lower `approvals` or staff the role",
                                (*path, sid, "approvals"),
                            )
                        )
                if isinstance(state, s.NotifyState):
                    for index, target in enumerate(state.to):
                        if not target.startswith("channel:") and target not in staffed:
                            found.append(
                                Finding(
                                    "SOP121",
                                    f"notify {sid!r} goes to role {target!r}, which nobody in "
                                    "the roster holds, so nobody will receive it",
                                    (*path, sid, "to", index),
                                    severity="warning",
                                )
                            )
                for role, where in roles:
                    if role not in staffed:
                        found.append(
                            Finding(
                                "SOP121",
                                f"nobody in the roster holds role {role!r} (step {sid!r}); add "
                                "the role to a person in team.yaml" + suggest(role, staffed),
                                where,
                            )
                        )
        return found


def _map_names(sop: s.SopSpec, states_path: Path_) -> set[str]:
    """Names a map iterator adds (item_as, index) for every enclosing map of a scope."""
    names: set[str] = set()
    node: Any = sop
    for part in states_path[:-1]:
        node = node.get(part) if isinstance(node, dict) else getattr(node, str(part), None)
        if isinstance(node, s.MapState):
            names |= {node.item_as, "index"}
    return names


def _at(doc: YamlDoc, finding: Finding) -> Diagnostic:
    line, column = doc.position(finding.path, key=finding.at_key)
    return Diagnostic(finding.code, finding.message, doc.file, line, column, finding.severity)


# ---------------------------------------------------------------- pydantic errors

_TRANSITION_KEYS = ("next", "on_approve", "on_reject", "default", "on_fail")
_REQUIRED_TOP = {"id": "x", "version": 1, "title": "x"}


def _repair(data: dict[str, Any], exc: ValidationError, stubs: list[Path_]) -> dict[str, Any]:
    """A copy of `data` where each structurally broken state is a stub keeping its targets.

    Lets the graph, role, template and expression checks run on everything else, so one
    typo does not hide the other problems. Findings inside stubs are dropped.
    """
    import copy

    fixed = copy.deepcopy(data)
    for error in exc.errors(include_url=False):
        path, _loc = _data_path(data, tuple(error["loc"]))
        state_at = _innermost_state(path)
        if state_at is not None:
            if state_at not in stubs:
                stubs.append(state_at)
            continue
        if path and path[0] in _REQUIRED_TOP:
            fixed[str(path[0])] = _REQUIRED_TOP[str(path[0])]
        elif path and path[0] == "start":
            states = fixed.get("states")
            fixed["start"] = next(iter(states)) if isinstance(states, dict) and states else "x"
        elif len(path) >= 2 and isinstance(fixed.get(str(path[0])), dict):
            fixed[str(path[0])].pop(path[1], None)
        elif path:
            fixed.pop(str(path[0]), None)
    for state_path in sorted(stubs, key=len, reverse=True):
        parent = _get(fixed, state_path[:-1])
        if isinstance(parent, dict):
            parent[state_path[-1]] = _stub(parent.get(state_path[-1]), parent)
    return fixed


def _innermost_state(path: Path_) -> Path_ | None:
    found = None
    for i in range(len(path) - 1):
        if path[i] == "states" and isinstance(path[i + 1], str):
            found = path[: i + 2]
    return found


def _get(node: Any, path: Path_) -> Any:
    for part in path:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return None
    return node


def _stub(raw: Any, siblings: dict[str, Any]) -> dict[str, Any]:
    """A choice that goes wherever the broken state could go (or an end if nowhere)."""
    targets: list[str] = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            if (
                isinstance(value, str)
                and value in siblings
                and (key in _TRANSITION_KEYS or key not in ("type", "role", "title"))
            ):
                targets.append(value)
        timeout = raw.get("on_timeout")
        if isinstance(timeout, dict) and isinstance(timeout.get("goto"), str):
            targets.append(timeout["goto"])
        for choice in raw.get("choices") or []:
            if isinstance(choice, dict) and isinstance(choice.get("next"), str):
                targets.append(choice["next"])
    targets = [t for t in dict.fromkeys(targets) if t in siblings]
    if not targets:
        return {"type": "succeed"}
    return {
        "type": "choice",
        "choices": [{"when": "true", "next": t} for t in targets],
        "default": targets[0],
    }


def _pydantic_problems(exc: ValidationError, doc: YamlDoc) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    seen: set[tuple[Path_, str]] = set()
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path, model_path = _data_path(doc.data, loc)
        kind = error["type"]
        if (path, kind) in seen:
            continue
        seen.add((path, kind))
        found.append(_describe(doc, error, kind, path, model_path))
    return found


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Path_, tuple[Any, ...]]:
    """Map a pydantic loc onto the YAML path, dropping union tags that are not data keys."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            path.append(part)
            node = node[part]
        elif i == len(loc) - 1:
            path.append(part)
        # else: a union tag such as 'task' or 'template' — not part of the document
    return tuple(path), loc


def _describe(doc: YamlDoc, error: Any, kind: str, path: Path_, loc: tuple[Any, ...]) -> Diagnostic:
    where = _where(path)
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = allowed_keys(s.SopSpec, loc[:-1])
        line, col = doc.position(path, key=True)
        return Diagnostic(
            "SOP101",
            f"unknown key {key!r}{where}; allowed: {listing(allowed, 30)}" + suggest(key, allowed),
            doc.file,
            line,
            col,
        )
    if kind == "missing":
        key = str(path[-1])
        parent = path[:-1]
        line, col = doc.position(parent, key=True)
        owner = _where(parent)
        if key == "on_timeout":
            return Diagnostic(
                "SOP140",
                f"human step{owner} has no on_timeout; say what happens when it times out: "
                "on_timeout: fail | skip | {goto: STATE}",
                doc.file,
                line,
                col,
            )
        return Diagnostic("SOP104", f"missing required key {key!r}{owner}", doc.file, line, col)
    line, col = doc.position(path)
    if kind == "union_tag_invalid":
        found = error.get("ctx", {}).get("tag", "?")
        return Diagnostic(
            "SOP102",
            f"unknown state type {found!r}{where}; allowed: {listing(s.STATE_TYPES)}"
            + suggest(str(found), s.STATE_TYPES),
            doc.file,
            *doc.position((*path, "type")),
        )
    if kind == "union_tag_not_found":
        return Diagnostic(
            "SOP104",
            f"missing required key 'type'{where}; one of {listing(s.STATE_TYPES)}",
            doc.file,
            *doc.position(path, key=True),
        )
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    shown = _shown_input(error.get("input"))
    if shown and "found" not in message and not isinstance(error.get("input"), dict | list):
        message += f", found {shown}"
    return Diagnostic("SOP102", f"{_dotted(path)}: {message}", doc.file, line, col)


def _shown_input(value: Any) -> str:
    if isinstance(value, dict | list):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "document"


def _where(path: Path_) -> str:
    if len(path) >= 2 and "states" in path:
        idx = len(path) - 1 - list(reversed(path)).index("states")
        if idx + 1 < len(path):
            rest = path[idx + 2 : -1] if len(path) > idx + 2 else ()
            inner = f" ({'.'.join(str(p) for p in rest)})" if rest else ""
            return f" in state {path[idx + 1]!r}{inner}"
    if len(path) > 1:
        return f" in {_dotted(path[:-1])}"
    return ""


def allowed_keys(root: type[BaseModel], loc: tuple[Any, ...], *, tag: str = "type") -> list[str]:
    """The keys the model at `loc` under `root` accepts, found by walking the annotations.
    `tag` is the field that tells the members of a union apart (a state's `type`, a
    probe's `kind`). Shared by every file format validated with positions."""
    current: Any = root
    for part in loc:
        current = _member_type(current, part, tag)
        if current is None:
            return []
    model = _model_of(current)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _unwrap(tp: Any) -> Any:
    """Without Annotated, and without None in an optional."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _model_of(tp: Any) -> type[BaseModel] | None:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        models = [m for m in (_model_of(a) for a in typing.get_args(tp)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def _member_type(tp: Any, part: Any, tag: str) -> Any:
    tp = _unwrap(tp)
    model = tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None
    if model is not None:
        for name, info in model.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    origin = typing.get_origin(tp)
    if origin is dict:
        return typing.get_args(tp)[1]
    if origin is list:
        return typing.get_args(tp)[0]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            member = _model_of(arg)
            if member is None:
                continue
            tag_field = member.model_fields.get(tag)
            if tag_field is not None and typing.get_args(tag_field.annotation) == (part,):
                return member
            if member.__name__.lower() == str(part).lower():
                return member
        if part == "template":
            return s.Template
        return None
    return None


# ---------------------------------------------------------------- rosters and paths


def load_roster(path: str | os.PathLike[str]) -> tuple[Roster | None, list[Diagnostic]]:
    doc, problems = load_yaml(path)
    if doc is None:
        return None, problems
    try:
        roster = Roster.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        return None, [
            Diagnostic("SOP160", d.message, d.file, d.line, d.column)
            for d in _pydantic_problems(exc, doc)
        ]
    found: list[Diagnostic] = []
    for pid, person in roster.people.items():
        for i, role in enumerate(person.roles):
            if roster.roles and role not in roster.roles:
                line, col = doc.position(("people", pid, "roles", i))
                found.append(
                    Diagnostic(
                        "SOP160",
                        f"person {pid!r} has role {role!r}, which is not listed under roles; "
                        f"known: {listing(sorted(roster.roles))}" + suggest(role, roster.roles),
                        doc.file,
                        line,
                        col,
                    )
                )
    return (None if found else roster), found


def is_roster(path: Path) -> bool:
    return path.name in ROSTER_NAMES


def expand(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Diagnostic]]:
    """Files named directly, plus *.yaml/*.yml under folders, sorted; missing paths reported."""
    files: list[Path] = []
    missing: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.suffix in (".yaml", ".yml") and not p.stem.endswith(".scenario")
            )
        elif path.exists():
            files.append(path)
        else:
            missing.append(Diagnostic("SOP001", "no such file or folder", str(path)))
    return files, missing


def find_roster(files: Iterable[Path]) -> Path | None:
    for file in files:
        for name in ROSTER_NAMES:
            candidate = file.parent / name
            if candidate.is_file():
                return candidate
    return None


def validate_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    roster_path: str | os.PathLike[str] | None = None,
    templates_root: str | os.PathLike[str] | None = None,
    check_monitors: Callable[[Path], list[Diagnostic]] | None = None,
) -> tuple[list[Diagnostic], int]:
    """Validate every SOP (and roster) under `paths`: (all diagnostics, files checked).

    A monitors file is handed to `check_monitors` (the edge that knows probes), or
    skipped without it."""
    files, diagnostics = expand(paths)
    roster_file = Path(roster_path) if roster_path else find_roster(files)
    roster: Roster | None = None
    if roster_file is not None:
        roster, problems = load_roster(roster_file)
        diagnostics += problems
    templates = TemplateLibrary(Path(templates_root)) if templates_root else None
    checker = Checker(roster=roster, templates=templates)
    for file in files:
        if is_roster(file):
            if roster_file is None or file.resolve() != roster_file.resolve():
                diagnostics += load_roster(file)[1]
            continue
        if file.name in MONITOR_NAMES:
            if check_monitors is not None:
                diagnostics += check_monitors(file)
            continue
        checker.library = file.parent
        diagnostics += checker.load(file)[1]
    return diagnostics, len(files)
