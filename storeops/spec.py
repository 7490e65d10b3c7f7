"""The SOP language as pydantic models: what a definition may say, not whether it makes sense.

Pure core: imports the standard library and pydantic only (no YAML, no Jinja2, no I/O).
Keys are snake_case and equal the field names, so a validation error's path is the YAML
path. Cross-references (targets, roles, templates, expressions) are checked in `checks.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    WithJsonSchema,
    model_validator,
)

from storeops.durations import DURATION_HELP, parse_duration

LOCALES = ("zh-CN", "en")
STATE_ID = r"^[a-z][a-z0-9_]*$"
SOP_ID = r"^[a-z][a-z0-9-]*$"
NAME = r"^[a-z][a-z0-9_]*$"

#: Error classes an action's `catch` may name; `Error` matches any of them.
ERROR_CLASSES = (
    "Error",
    "Timeout",
    "RateLimited",
    "Unavailable",
    "NotFound",
    "Conflict",
    "Invalid",
    "Unauthorized",
    "NotConfigured",
    "CallFailed",
)


def _check_text(value: Any) -> str | dict[str, str]:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
        unknown = [k for k in value if k not in LOCALES]
        if unknown:
            raise ValueError(
                f"unknown locale {unknown[0]!r}; text maps use the locales {', '.join(LOCALES)}"
            )
        return value
    raise ValueError(
        f"expected text or a map of locales such as {{zh-CN: …, en: …}}, found {_shown(value)}"
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TEXT_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "object",
            "properties": {loc: {"type": "string"} for loc in LOCALES},
            "additionalProperties": False,
        },
    ]
}

#: Plain text, or one text per locale: `{zh-CN: 大促准备, en: Promotion prep}`.
Text = Annotated[str | dict[str, str], PlainValidator(_check_text), WithJsonSchema(_TEXT_SCHEMA)]


def _duration(value: Any) -> float:
    return parse_duration(value)


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema({"type": ["string", "number"], "description": DURATION_HELP}),
]

_DURATION_EXPR = re.compile(r"^\s*(params|vars|steps)\.")


def _duration_or_expression(value: Any) -> Any:
    """A duration, or an expression over params/vars/steps giving one (a wait's `for`, a
    human step's `due`, `timeout`, `remind.every`, `escalate.after`)."""
    if isinstance(value, str) and _DURATION_EXPR.match(value):
        return value.strip()
    return parse_duration(value)


DurationOrExpr = Annotated[
    float | str,
    BeforeValidator(_duration_or_expression),
    WithJsonSchema(
        {
            "type": ["string", "number"],
            "description": DURATION_HELP + ", or an expression such as params.update_every",
        }
    ),
]

StateId = Annotated[str, Field(pattern=STATE_ID)]


def localize(text: str | dict[str, str] | None, locale: str = "en") -> str:
    """Pick the text for a locale, falling back to English, then to any locale."""
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    return text.get(locale) or text.get("en") or next(iter(text.values()), "")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


ValueType = Literal[
    "string", "int", "number", "bool", "date", "datetime", "duration", "list", "enum"
]


class FieldSpec(Model):
    """A typed value: an SOP parameter or a form field of a human step."""

    type: ValueType = "string"
    title: Text | None = None
    description: Text | None = None
    required: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    values: list[str] | None = Field(default=None, description="allowed values of an enum")
    items: ValueType | None = Field(default=None, description="element type of a list")

    @model_validator(mode="after")
    def _enum_values(self) -> FieldSpec:
        if self.type == "enum" and not self.values:
            raise ValueError("an enum needs `values`, the list of allowed values")
        if self.values is not None and self.type != "enum":
            raise ValueError("`values` applies only to type enum")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class ChecklistItem(Model):
    item: Text
    required: bool = True


class Evidence(Model):
    """A file the person must attach; its SHA-256 digest goes into the ledger."""

    name: Annotated[str, Field(pattern=NAME)]
    title: Text | None = None
    required: bool = True
    min_count: int = Field(default=1, ge=0)
    kinds: list[str] = Field(default_factory=list, description="media types, e.g. image/*")


class Remind(Model):
    every: DurationOrExpr
    max: int | None = Field(default=None, ge=1, description="stop after this many reminders")


class Escalate(Model):
    after: DurationOrExpr
    to: Annotated[str, Field(pattern=NAME)]


class Goto(Model):
    goto: StateId


def _on_timeout(value: Any) -> str | Goto:
    if value in ("fail", "skip"):
        return str(value)
    if isinstance(value, dict) and set(value) == {"goto"}:
        return Goto.model_validate(value)
    raise ValueError(f"on_timeout must be fail, skip or {{goto: STATE}}, found {_shown(value)}")


OnTimeout = Annotated[
    str | Goto,
    PlainValidator(_on_timeout),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": ["fail", "skip"]},
                {
                    "type": "object",
                    "properties": {"goto": {"type": "string", "pattern": STATE_ID}},
                    "required": ["goto"],
                    "additionalProperties": False,
                },
            ]
        },
    ),
]


class Template(Model):
    template: str = Field(description="path under templates/<locale>/")


def _instructions_kind(value: Any) -> str:
    if isinstance(value, Template) or (isinstance(value, dict) and "template" in value):
        return "template"
    return "text"


Instructions = Annotated[
    Annotated[Text, Tag("text")] | Annotated[Template, Tag("template")],
    Discriminator(_instructions_kind),
]


def _checklist_item(value: Any) -> Any:
    if isinstance(value, str) or (isinstance(value, dict) and "item" not in value):
        return {"item": value}
    return value


class _State(Model):
    title: Text | None = None
    description: Text | None = None


class _Human(_State):
    role: Annotated[str, Field(pattern=NAME)]
    title: Text
    about: Text | None = Field(
        default=None,
        description="what this run's step is about, shown after the title in the inbox and "
        "in notices; may use {{ }} (e.g. '{{ params.sku }}'); the title stays the same for "
        "every run",
    )
    instructions: Instructions | None = None
    checklist: list[Annotated[ChecklistItem, BeforeValidator(_checklist_item)]] = Field(
        default_factory=list
    )
    fields: dict[Annotated[str, Field(pattern=NAME)], FieldSpec] = Field(default_factory=dict)
    evidence: list[Evidence] = Field(default_factory=list)
    due: DurationOrExpr | None = Field(default=None, description="SLA: overdue after this")
    timeout: DurationOrExpr | None = Field(
        default=None, description="when on_timeout applies; defaults to due"
    )
    remind: Remind | None = None
    escalate: Escalate | None = None
    on_timeout: OnTimeout

    @model_validator(mode="before")
    @classmethod
    def _short_remind(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("remind"), str | int | float):
            data = {**data, "remind": {"every": data["remind"]}}
        return data

    @model_validator(mode="after")
    def _positive_spans(self) -> _Human:
        spans = {
            "due": self.due,
            "timeout": self.timeout,
            "remind.every": self.remind.every if self.remind else None,
            "escalate.after": self.escalate.after if self.escalate else None,
        }
        for name, span in spans.items():
            if isinstance(span, float | int) and span <= 0:
                raise ValueError(f"`{name}` must be longer than 0s (a timer due at once)")
        return self

    @property
    def timeout_after(self) -> float | str | None:
        return self.timeout if self.timeout is not None else self.due


class TaskState(_Human):
    type: Literal["task"]
    next: StateId
    on_reject: StateId | None = Field(
        default=None, description="where a refused task goes; without it, tasks cannot be rejected"
    )


class ApprovalState(_Human):
    type: Literal["approval"]
    on_approve: StateId
    on_reject: StateId
    approvals: int = Field(default=1, ge=1, description="N distinct approvers needed (N-of-M)")
    four_eyes: StateId | None = Field(
        default=None, description="an earlier human step whose completer may not approve"
    )


class Retry(Model):
    attempts: int = Field(default=1, ge=1, le=100)
    backoff: Duration = 1.0
    factor: float = Field(default=2.0, ge=1.0)
    max_delay: Duration = 300.0
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)


class ActionState(_State):
    type: Literal["action"]
    uses: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")]
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    retry: Retry = Field(default_factory=Retry)
    timeout: Duration = 30.0
    catch: dict[str, StateId] = Field(default_factory=dict)
    save_as: Annotated[str, Field(pattern=NAME)] | None = None
    next: StateId


class Choice(Model):
    when: str
    next: StateId


class ChoiceState(_State):
    type: Literal["choice"]
    choices: list[Choice] = Field(min_length=1)
    default: StateId | None = None


class Branch(Model):
    title: Text | None = None
    start: StateId
    states: dict[StateId, State]


def _join(value: Any) -> str | int:
    if value in ("all", "any") or (
        isinstance(value, int) and not isinstance(value, bool) and value >= 1
    ):
        return value  # type: ignore[no-any-return]
    raise ValueError(f"join must be all, any or a number of branches >= 1, found {_shown(value)}")


_JOIN_SCHEMA = {"anyOf": [{"enum": ["all", "any"]}, {"type": "integer", "minimum": 1}]}


class ParallelState(_State):
    type: Literal["parallel"]
    branches: dict[Annotated[str, Field(pattern=NAME)], Branch] = Field(min_length=1)
    join: Annotated[str | int, PlainValidator(_join), WithJsonSchema(_JOIN_SCHEMA)] = "all"
    next: StateId
    on_fail: StateId | None = None


class MapState(_State):
    type: Literal["map"]
    items: str = Field(description="expression giving the list to map over")
    item_as: Annotated[str, Field(pattern=NAME)] = "item"
    max_concurrency: int = Field(default=10, ge=1, le=10000)
    iterator: Branch
    tolerate_failures: int = Field(default=0, ge=0)
    save_as: Annotated[str, Field(pattern=NAME)] | None = None
    next: StateId
    on_fail: StateId | None = None


class WaitState(_State):
    type: Literal["wait"]
    for_: DurationOrExpr | None = Field(default=None, alias="for")
    until: str | None = Field(default=None, description="expression giving an ISO instant")
    next: StateId

    @model_validator(mode="after")
    def _one_of(self) -> WaitState:
        if (self.for_ is None) == (self.until is None):
            raise ValueError("a wait needs exactly one of `for` (a duration) or `until`")
        return self


class NotifyState(_State):
    type: Literal["notify"]
    to: list[str] = Field(min_length=1, description="roles, or channel:NAME")
    template: str | None = None
    message: Text | None = None
    next: StateId

    @model_validator(mode="after")
    def _one_of(self) -> NotifyState:
        if (self.template is None) == (self.message is None):
            raise ValueError("a notify needs exactly one of `template` or `message`")
        return self


class CallState(_State):
    type: Literal["call"]
    sop: Annotated[str, Field(pattern=SOP_ID)]
    version: int | None = Field(default=None, description="pin the sub-SOP's version")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    save_as: Annotated[str, Field(pattern=NAME)] | None = None
    catch: dict[str, StateId] = Field(default_factory=dict)
    next: StateId


class SucceedState(_State):
    type: Literal["succeed"]
    output: dict[str, Any] = Field(default_factory=dict)


class FailState(_State):
    type: Literal["fail"]
    error: str = "Failed"
    cause: Text | None = None


State = Annotated[
    TaskState
    | ApprovalState
    | ActionState
    | ChoiceState
    | ParallelState
    | MapState
    | WaitState
    | NotifyState
    | CallState
    | SucceedState
    | FailState,
    Field(discriminator="type"),
]

STATE_TYPES = (
    "task",
    "approval",
    "action",
    "choice",
    "parallel",
    "map",
    "wait",
    "notify",
    "call",
    "succeed",
    "fail",
)

HumanState = TaskState | ApprovalState


class SopSpec(Model):
    """One SOP definition. Runs are pinned to its content hash, never to the file."""

    id: Annotated[str, Field(pattern=SOP_ID)]
    version: int = Field(ge=1)
    title: Text
    summary: Text | None = None
    params: dict[Annotated[str, Field(pattern=NAME)], FieldSpec] = Field(default_factory=dict)
    roles: list[Annotated[str, Field(pattern=NAME)]] = Field(default_factory=list)
    business_key: str | None = Field(
        default=None, description="expression naming a run, e.g. params.promo_code"
    )
    start: StateId
    states: dict[StateId, State] = Field(min_length=1)


Branch.model_rebuild()


def transitions(state: Any) -> Iterator[tuple[str, str]]:
    """Yield (field name, target) for every transition a state declares."""
    for name in ("next", "on_reject", "on_approve", "default", "on_fail"):
        target = getattr(state, name, None)
        if target is not None:
            yield name, target
    if isinstance(state, _Human) and isinstance(state.on_timeout, Goto):
        yield "on_timeout", state.on_timeout.goto
    if isinstance(state, ChoiceState):
        for index, choice in enumerate(state.choices):
            yield f"choices.{index}.next", choice.next
    if isinstance(state, ActionState | CallState):
        for error, target in state.catch.items():
            yield f"catch.{error}", target


def is_human(state: Any) -> bool:
    return isinstance(state, TaskState | ApprovalState)


def is_end(state: Any) -> bool:
    return isinstance(state, SucceedState | FailState)


def walk_scopes(
    states: dict[str, Any], path: tuple[str | int, ...] = ("states",)
) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any], str | None]]:
    """Yield (yaml path of the states map, states, owner) for the SOP and every nested branch.

    `owner` is None for the top level, else the parallel or map state that owns the scope.
    """
    yield path, states, None
    for sid, state in states.items():
        if isinstance(state, ParallelState):
            for name, branch in state.branches.items():
                sub = (*path, sid, "branches", name, "states")
                for found in walk_scopes(branch.states, sub):
                    yield found[0], found[1], found[2] or sid
        elif isinstance(state, MapState):
            sub = (*path, sid, "iterator", "states")
            for found in walk_scopes(state.iterator.states, sub):
                yield found[0], found[1], found[2] or sid


def all_states(spec: SopSpec) -> dict[str, Any]:
    """Every state of every scope by id (ids are unique across the whole SOP)."""
    found: dict[str, Any] = {}
    for _path, states, _owner in walk_scopes(spec.states):
        for sid, state in states.items():
            found.setdefault(sid, state)
    return found
