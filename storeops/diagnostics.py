"""Problems found in definitions, as compiler-style diagnostics, and the catalogue of codes.

Pure core: standard library only. This module is the one place where codes are
documented; `docs/diagnostics.md` is generated from it (`storeops codes --markdown`) and a
test keeps the two equal. Codes are stable: never reuse or renumber one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]

#: code -> (short title, what it means and how to fix it)
CODES: dict[str, tuple[str, str]] = {
    "SOP001": ("file unreadable", "The file is missing, too large, or not UTF-8 text."),
    "SOP002": ("YAML syntax", "The YAML parser stopped; the position is where it gave up."),
    "SOP003": ("duplicate key", "A mapping names the same key twice; YAML keeps only one."),
    "SOP004": (
        "unsafe or oversized YAML",
        "A tag other than plain YAML values (e.g. !!python/object), or anchors and aliases "
        "that expand beyond the limit (billion laughs).",
    ),
    "SOP005": ("nesting too deep", "Mappings and lists nest deeper than the limit."),
    "SOP006": (
        "not an SOP document",
        "The file is empty or its top level is not a mapping of SOP keys.",
    ),
    "SOP007": ("tab indentation", "YAML forbids tabs for indentation; use spaces."),
    "SOP008": ("took too long", "Loading exceeded the time budget; the file is too complex."),
    "SOP101": ("unknown key", "The key is not part of the SOP language at this place."),
    "SOP102": ("wrong type or value", "The value does not have the type or range required."),
    "SOP103": ("unknown target", "A transition names a state that does not exist in its scope."),
    "SOP104": ("missing key", "A required key is absent."),
    "SOP105": ("id is not the file name", "An SOP's `id` must equal its file stem."),
    "SOP106": ("unknown start", "`start` names a state that does not exist in its scope."),
    "SOP107": (
        "transition leaves its scope",
        "A state inside a parallel branch or map iterator can only go to states of the same "
        "branch; it ends the branch with succeed or fail.",
    ),
    "SOP108": ("duplicate state id", "State ids must be unique across the whole SOP."),
    "SOP110": ("unreachable state", "No path from `start` leads to this state."),
    "SOP111": ("no path to an end", "From this state no path reaches a succeed or fail state."),
    "SOP112": (
        "cannot finish",
        "A parallel or map can never join: a branch has no end, or `join` asks for more "
        "branches than exist.",
    ),
    "SOP120": ("undeclared role", "A step's role is not listed in the SOP's `roles`."),
    "SOP121": ("role not in roster", "No person in the roster (team.yaml) holds this role."),
    "SOP122": (
        "approval cannot be met",
        "An approval needs more distinct approvers than the roster has people in the role.",
    ),
    "SOP130": ("template missing", "The template file does not exist under templates/<locale>/."),
    "SOP131": ("template does not compile", "Jinja2 could not compile the template."),
    "SOP132": ("expression does not compile", "Jinja2 could not compile the expression."),
    "SOP133": (
        "unknown name in expression",
        "An expression reads a parameter, saved result or step that the SOP does not define.",
    ),
    "SOP136": (
        "reserved item name",
        "A map's `item_as` hides params, vars, steps, run or index inside its iterator.",
    ),
    "SOP137": (
        "run value in a title",
        "A step's title is the same for every run (analytics, the diagram and the timeline show "
        "it); put run values such as {{ params.sku }} in `about:`, shown after the title.",
    ),
    "SOP140": (
        "human step without on_timeout",
        "Every task and approval must say what happens when it times out: "
        "on_timeout: fail | skip | {goto: STATE}.",
    ),
    "SOP141": (
        "timer can never fire",
        "An escalation or reminder is due after the step's timeout, so it never happens.",
    ),
    "SOP150": (
        "bad four-eyes reference",
        "`four_eyes` must name an earlier human step (task or approval).",
    ),
    "SOP152": ("unknown error class", "`catch` names an error class that does not exist."),
    "SOP153": ("unknown operation", "`uses` names a connector operation that does not exist."),
    "SOP154": (
        "unknown sub-SOP",
        "A `call` names an SOP that is not in the library, or pins a version it does not have.",
    ),
    "SOP160": ("roster problem", "team.yaml is malformed or references an unknown role."),
}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem at a 1-based line and column of a file."""

    code: str
    message: str
    file: str
    line: int = 1
    column: int = 1
    severity: Severity = "error"

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}:{self.column}: {self.severity}[{self.code}]: {self.message}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def suggest(word: str, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` when a close match exists, else an empty string."""
    matches = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def listing(items: Iterable[str], limit: int = 12) -> str:
    """A readable comma list, shortened past `limit` items."""
    values = list(items)
    shown = ", ".join(values[:limit])
    return shown + (f", … ({len(values) - limit} more)" if len(values) > limit else "")


def sort_key(diag: Diagnostic) -> tuple[str, int, int, str]:
    return (diag.file, diag.line, diag.column, diag.code)


def codes_markdown() -> str:
    """The catalogue as Markdown, written to docs/diagnostics.md."""
    lines = [
        "# Diagnostic codes",
        "",
        "Generated from `storeops/diagnostics.py` by `storeops codes --markdown`; "
        "do not edit by hand. Codes are stable.",
        "",
        "| code | problem | meaning and fix |",
        "|---|---|---|",
    ]
    lines += [f"| {code} | {title} | {text} |" for code, (title, text) in CODES.items()]
    return "\n".join(lines) + "\n"
