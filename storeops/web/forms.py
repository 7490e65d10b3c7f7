"""HTML forms to engine inputs: typed fields, checklist answers and parameters.

Pure: standard library only. Browsers send text; the engine's `coerce_value` turns text
into each field's type and says what is wrong, so here values are only gathered, never
judged (an empty input is left out, which the engine reads as "not given"). Form names are
prefixed (`f.` fields, `c.` checklist, `e.` files, `k.` kept evidence, `p.` params) so
no SOP field can collide with the form's own inputs (csrf, note, reason).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_OFFSET = re.compile(r"^-?\d{1,4}$")
_HAS_ZONE = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")

#: The input a field type is shown with (enum and bool are selects, list a text area).
INPUTS = {
    "string": "textarea",
    "int": "number",
    "number": "number",
    "bool": "select",
    "enum": "select",
    "date": "date",
    "datetime": "datetime-local",
    "duration": "text",
    "list": "textarea",
}


def zone_suffix(offset_minutes: str | None) -> str:
    """`+08:00` for a browser's `getTimezoneOffset()` of -480; "" when unknown."""
    if not offset_minutes or not _OFFSET.match(offset_minutes.strip()):
        return ""
    east = -int(offset_minutes)
    if abs(east) > 14 * 60:
        return ""
    sign = "+" if east >= 0 else "-"
    return f"{sign}{abs(east) // 60:02d}:{abs(east) % 60:02d}"


def _value(kind: str, raw: str, zone: str) -> Any:
    if kind == "list":
        return [item.strip() for item in re.split(r"[\n,，]", raw) if item.strip()]
    if kind == "string":
        return raw.replace("\r\n", "\n")
    text = raw.strip()
    if kind == "datetime" and text and zone and not _HAS_ZONE.search(text):
        return (text + ":00" if text.count(":") == 1 else text) + zone
    return text


def typed_values(
    prefix: str, specs: Mapping[str, Mapping[str, Any]], form: Mapping[str, str], zone: str = ""
) -> dict[str, Any]:
    """Values for the engine from inputs named PREFIX+NAME; empty inputs are left out."""
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        raw = form.get(prefix + name)
        if raw is None or not raw.strip():
            continue
        values[name] = _value(str(spec.get("type", "string")), raw, zone)
    return values


def shown_values(prefix: str, names: Iterable[str], form: Mapping[str, str]) -> dict[str, str]:
    """What the person typed, to show the form again after a refusal."""
    return {name: form[prefix + name] for name in names if prefix + name in form}


def checklist_answers(count: int, form: Mapping[str, str]) -> dict[int, str]:
    """`c.N` = done | na (with `c.N.reason`) → the engine's {N: 'done' | 'n/a: reason'}."""
    answers: dict[int, str] = {}
    for number in range(1, count + 1):
        choice = form.get(f"c.{number}", "")
        if choice == "done":
            answers[number] = "done"
        elif choice == "na":
            reason = " ".join(form.get(f"c.{number}.reason", "").split())
            answers[number] = f"n/a: {reason}" if reason else "n/a"
    return answers


def field_widgets(
    specs: Mapping[str, Mapping[str, Any]], shown: Mapping[str, str]
) -> list[dict[str, Any]]:
    """What a template needs to draw each field: input kind, bounds, choices, value."""
    widgets = []
    for name, spec in specs.items():
        kind = str(spec.get("type", "string"))
        default = spec.get("default")
        value = shown.get(name)
        if value is None and default is not None:
            value = ", ".join(map(str, default)) if isinstance(default, list) else str(default)
        if kind == "bool" and value is not None:
            value = "true" if value.lower() in ("true", "yes", "1", "是") else "false"
        widgets.append(
            {
                "name": name,
                "type": kind,
                "input": INPUTS.get(kind, "text"),
                "title": spec.get("title") or name,
                "required": bool(spec.get("required")),
                "min": spec.get("min"),
                "max": spec.get("max"),
                "values": list(spec.get("values") or []),
                "value": value or "",
            }
        )
    return widgets
