"""Validate and encode events for any ledger backend, before a lock or transaction is taken.

Standard library only, shared by the SQLite and PostgreSQL backends so both store the
same bytes; must not import a database driver.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from storeops.ledger.base import (
    RUN_FINISHED,
    TIMESTAMP,
    NewEvent,
    RunRecord,
    body_prefix,
    check_timestamp,
)
from storeops.ledger.canonical import canonical_json

__all__ = ["Prepared", "check_record", "prepare"]

# (type, at, body bytes up to and including the data, data as read back, finished status)
Prepared = tuple[str, str, bytes, dict[str, Any], str | None]


def check_record(record: RunRecord) -> None:
    if not isinstance(record.run_id, str) or not record.run_id:
        raise ValueError(f"run id must be a non-empty string, got {record.run_id!r}")
    check_timestamp(record.started_at, f"run {record.run_id}: started_at")
    check_timestamp(record.updated_at, f"run {record.run_id}: updated_at")


def prepare(run_id: str, events: Sequence[NewEvent]) -> list[Prepared]:
    """Validate and encode events before any lock or transaction is taken.

    The hot loop builds no strings it does not store: error context is made on failure.
    """
    prepared: list[Prepared] = []
    loads = json.loads
    is_timestamp = TIMESTAMP.fullmatch
    for index, event in enumerate(events, start=1):
        type_, at, data = event.type, event.at, event.data
        if type(type_) is not str or not type_:
            raise ValueError(f"{_where(run_id, index, events)}: type must be a non-empty string")
        if type(at) is not str or is_timestamp(at) is None:
            check_timestamp(at, f"{_where(run_id, index, events)}: at")
        if type(data) is not dict:
            raise ValueError(
                f"{_where(run_id, index, events)}: data must be a dict, got {type(data).__name__}"
            )
        try:
            data_json = canonical_json(data, what="data")
        except ValueError as exc:
            raise ValueError(f"{_where(run_id, index, events)}: {exc}") from exc
        status = None
        if type_ == RUN_FINISHED:
            status = data.get("status")
            if not isinstance(status, str) or not status:
                raise ValueError(
                    f'{_where(run_id, index, events)}: a run.finished event needs data["status"]'
                    " (a non-empty str)"
                )
        # Read back from the bytes so the returned data equals what events() returns and
        # does not alias the caller's dict.
        prepared.append((type_, at, body_prefix(at) + data_json, loads(data_json), status))
    return prepared


def _where(run_id: str, index: int, events: Sequence[NewEvent]) -> str:
    return f"run {run_id}: event {index} of {len(events)} ({events[index - 1].type!r})"
