"""Durations and instants as the SOP language writes them.

Pure: standard library only. `15m`, `2h30m`, `1d`, `90s`, `1w`, `250ms` (retry backoffs)
or ISO 8601 (`PT15M`, `P1DT2H`). The machine keeps times as integer microseconds, UTC.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_SHORT = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
_ISO = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")

DURATION_HELP = "a duration such as 90s, 15m, 2h30m, 1d, 500ms or ISO 8601 PT15M"


#: The longest duration the language accepts (ten years): timers past it are mistakes.
MAX_SECONDS = 10 * 365 * 86400


def parse_duration(text: str | int | float) -> float:
    """Return seconds for a duration; ValueError with the accepted forms otherwise."""
    try:
        seconds = _parse(text)
    except OverflowError:  # 99999999…d: far past any bound
        seconds = math.inf
    return _bounded(seconds, text)


def _bounded(seconds: float, text: object) -> float:
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"a duration must be between 0 and 10 years (3650d), found {text!r}")
    return seconds


def _parse(text: str | int | float) -> float:
    if isinstance(text, bool):
        raise ValueError(f"expected {DURATION_HELP}, found {text!r}")
    if isinstance(text, int | float):
        if text != text:  # NaN
            raise ValueError(f"expected {DURATION_HELP}, found {text!r}")
        return float(text)
    if not isinstance(text, str):  # None, a list: what an expression may give
        raise ValueError(f"expected {DURATION_HELP}, found {text!r}")
    raw = text.strip()
    match = _SHORT.match(raw.lower()) or _ISO.match(raw.upper())
    if not raw or match is None or not any(match.groups()):
        raise ValueError(f"expected {DURATION_HELP}, found {text!r}")
    sizes = (*_UNITS.values(), 0.001) if match.re is _SHORT else tuple(_UNITS.values())
    return float(sum(int(g) * f for g, f in zip(match.groups(), sizes, strict=True) if g))


def format_duration(seconds: float) -> str:
    """Short human form: 1d2h, 15m, 45s (whole seconds)."""
    rest = round(seconds)
    if rest == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        if unit == "w":
            continue
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def to_iso(ts: float) -> str:
    """UTC ISO 8601 with microseconds and a Z, the ledger's timestamp form."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(text: str) -> float:
    """Parse an ISO 8601 instant; naive values are taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def us_to_iso(us: int) -> str:
    """Exact ISO form of integer microseconds since the epoch (the machine's clock unit)."""
    from datetime import timedelta

    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_to_us(text: str) -> int:
    """Exact inverse of us_to_iso; accepts any ISO 8601 instant (naive means UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def seconds_to_us(seconds: float) -> int:
    return round(seconds * 1_000_000)
