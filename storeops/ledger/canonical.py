"""Canonical JSON bytes and SHA-256 helpers: the byte format the audit chain hashes.

Pure standard library; must not import the rest of storeops, pydantic or any backend.
Changing a byte of the output breaks every stored chain, so this module changes only
together with a ledger schema version bump.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

__all__ = ["GENESIS", "canonical_json", "check_json_value", "sha256_hex"]

GENESIS: Final = "0" * 64
"""prev_hash of event seq 1 in every run."""

_SCALARS: Final = frozenset({str, int, float, bool, type(None)})

# Same output as json.dumps with these options; one shared instance saves ~1 µs a call
# (encode() keeps no state between calls, so sharing across threads is safe).
_ENCODER: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def check_json_value(obj: object, what: str = "value") -> None:
    """Raise ValueError unless `obj` is plain JSON: dict with str keys, list, str, int,
    float, bool or None, nested to any depth. The message names the offending path.

    `json` itself would silently turn int keys into strings (and sort them as ints),
    which makes the bytes non-canonical, so keys are checked here. Tuples are refused
    too: they would read back as lists, and a stored event must read back equal (use
    pydantic's `model_dump(mode="json")`). Terminates on cyclic input; the cycle itself
    is reported by `canonical_json`.
    """
    try:
        if _plain(obj):  # fast path without building error paths
            return
    except RecursionError:
        pass  # deep or cyclic: the walk below copes with both
    stack: list[tuple[object, str]] = [(obj, what)]
    seen: set[int] = set()
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            if id(value) in seen:
                continue
            seen.add(id(value))
            for key, item in value.items():
                if type(key) is not str:
                    raise ValueError(
                        f"{path} has a key {key!r} of type {type(key).__name__}; "
                        "JSON object keys must be str"
                    )
                if type(item) not in _SCALARS:
                    stack.append((item, f"{path}[{key!r}]"))
        elif isinstance(value, list):
            if id(value) in seen:
                continue
            seen.add(id(value))
            for index, item in enumerate(value):
                if type(item) not in _SCALARS:
                    stack.append((item, f"{path}[{index}]"))
        elif not isinstance(value, str | int | float | None):
            raise ValueError(
                f"{path} is a {type(value).__name__}, which is not JSON; allowed are dict "
                "(str keys), list, str, int, float, bool and None"
            )


def _plain(value: object) -> bool:
    # True for exact JSON types only; subclasses and errors go to the precise walk.
    kind = type(value)
    if kind is dict:
        assert isinstance(value, dict)  # narrows for mypy; `type() is` is the fast test
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _SCALARS and not _plain(item)):
                return False
        return True
    if kind is list:
        assert isinstance(value, list)
        return all(type(item) in _SCALARS or _plain(item) for item in value)
    return kind in _SCALARS


def canonical_json(obj: Any, *, what: str = "value") -> bytes:
    """Return the canonical UTF-8 JSON bytes of `obj`.

    Deterministic: sorted keys at every level, no whitespace, non-ASCII kept as UTF-8,
    NaN and infinities refused. Equal values give equal bytes. Raises ValueError naming
    the offending part (under the name `what`) for anything that is not plain JSON (see
    `check_json_value`).
    """
    check_json_value(obj, what)
    try:
        text = _ENCODER.encode(obj)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{what} cannot be written as canonical JSON: {exc}") from exc
    return text.encode("utf-8")


def sha256_hex(b: bytes) -> str:
    """Lower-case hex SHA-256 of `b` (64 characters)."""
    return hashlib.sha256(b).hexdigest()
