"""The audit ledger contract: records, errors and the abstract `Ledger` every backend
implements, plus the event-body format that the hash chain covers.

Standard library only; must not import a backend (sqlite3, asyncpg), the engine, Prefect,
httpx or ruamel. Backends depend on this module, never the other way round.

Exception tree::

    LedgerError
     ├── RunExistsError
     ├── RunNotFoundError
     ├── ConcurrentAppendError      (expected, actual)
     ├── DefinitionNotFoundError
     └── LedgerCorruptError
"""

from __future__ import annotations

import abc
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from types import TracebackType
from typing import Any, Final, Self

from storeops.ledger.canonical import GENESIS, canonical_json, sha256_hex

__all__ = [
    "RUN_FINISHED",
    "TIMESTAMP",
    "ConcurrentAppendError",
    "DefinitionNotFoundError",
    "Ledger",
    "LedgerCorruptError",
    "LedgerError",
    "NewEvent",
    "RunExistsError",
    "RunNotFoundError",
    "RunRecord",
    "StoredEvent",
    "VerifyProblem",
    "VerifyReport",
    "body_prefix",
    "body_suffix",
    "check_chains",
    "check_timestamp",
    "event_body",
    "format_timestamp",
]

RUN_FINISHED: Final = "run.finished"
"""Event type whose `data["status"]` becomes the run's status, and which closes the run."""

TIMESTAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
"""The only timestamp form the ledger stores (fixed width, so text order is time order)."""


# --- errors -------------------------------------------------------------------------


class LedgerError(Exception):
    """Base of every error the ledger raises; backend errors are mapped to it."""


class RunExistsError(LedgerError):
    """A run with this id is already in the ledger."""


class RunNotFoundError(LedgerError):
    """No run with this id is in the ledger."""


class ConcurrentAppendError(LedgerError):
    """Another writer appended to the run after the caller read its head.

    Nothing was written. The caller re-reads the run's events and decides again; this is
    how two processes completing the same step end with exactly one winner.
    """

    def __init__(self, run_id: str, expected: int, actual: int) -> None:
        self.run_id = run_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"run {run_id}: expected head at event {expected} but it is at event {actual}; "
            "another writer appended first — re-read the run's events and retry"
        )


class DefinitionNotFoundError(LedgerError):
    """No definition bundle is stored under this hash."""


class LedgerCorruptError(LedgerError):
    """Stored data cannot be read back as the ledger wrote it (see `Ledger.verify`)."""


# --- records ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. `at` is produced by the caller (`format_timestamp`), in the
    fixed form `2026-11-22T12:00:00.123456Z`; the ledger never reads a clock for event
    content, so replaying and simulating stay deterministic."""

    type: str
    at: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored: `hash = sha256_hex(event_body(...))` and `prev_hash` is the
    previous event's hash (`GENESIS` for seq 1)."""

    run_id: str
    seq: int
    type: str
    at: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run's row. `head_seq`/`head_hash` are those of its last event; `status` is set
    by the caller at creation and by a `run.finished` event afterwards."""

    run_id: str
    sop_id: str
    version: int
    def_hash: str
    business_key: str | None
    status: str
    started_at: str
    updated_at: str
    head_seq: int
    head_hash: str
    parent_run: str | None = None


@dataclass
class VerifyProblem:
    """One finding of `Ledger.verify`: the first bad event of a run (`seq` None when the
    problem is the run row itself), or a definition (`run_id` "" and `def_hash` set)."""

    run_id: str
    seq: int | None
    message: str
    def_hash: str | None = None

    def __str__(self) -> str:
        if self.def_hash is not None:
            return self.message
        return f"run {self.run_id}: {self.message}"


@dataclass
class VerifyReport:
    runs_checked: int
    events_checked: int
    problems: list[VerifyProblem] = field(default_factory=list)
    definitions_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


# --- body format --------------------------------------------------------------------


def format_timestamp(moment: datetime) -> str:
    """Format an aware datetime as the ledger's UTC timestamp (`...T12:00:00.123456Z`).

    Fixed width, so timestamps sort as text. Raises ValueError for a naive datetime.
    """
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {moment.isoformat()} has no time zone; give an aware UTC time")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_timestamp(value: object, what: str) -> None:
    """Raise ValueError unless `value` is a ledger timestamp string."""
    if not isinstance(value, str) or TIMESTAMP.fullmatch(value) is None:
        raise ValueError(
            f"{what} is {value!r}; expected a UTC timestamp like 2026-11-22T12:00:00.123456Z "
            "(use storeops.ledger.format_timestamp)"
        )


def event_body(run_id: str, seq: int, type: str, at: str, data_json: bytes, prev: str) -> bytes:
    """The hashed body of an event, given `data_json = canonical_json(data)`.

    Byte-identical to `canonical_json({"run": run_id, "seq": seq, "type": type, "at": at,
    "data": data, "prev": prev})` (sorted keys: at, data, prev, run, seq, type) but
    built without re-encoding the fixed fields through `json.dumps`.
    """
    return b"".join(
        (
            body_prefix(at),
            data_json,
            body_suffix(run_id, seq, type, prev),
        )
    )


def body_prefix(at: str) -> bytes:
    """The bytes of an event body before its data."""
    return f'{{"at":{encode_basestring(at)},"data":'.encode()


def body_suffix(run_id: str, seq: int, type: str, prev: str) -> bytes:
    """The bytes of an event body after its data."""
    return (
        f',"prev":{encode_basestring(prev)},"run":{encode_basestring(run_id)},'
        f'"seq":{seq},"type":{encode_basestring(type)}}}'
    ).encode()


def _self_check() -> None:
    # The hand-built body must equal the spec's canonical_json form; checked once at
    # import so a json change can never silently fork the format.
    data = {"b": [1, 2.5, None, True], "a": 'ü\n"'}
    spec = canonical_json(
        {"run": "r\\1", "seq": 3, "type": "t.x", "at": "A", "data": data, "prev": GENESIS}
    )
    built = event_body("r\\1", 3, "t.x", "A", canonical_json(data), GENESIS)
    if spec != built or len(sha256_hex(spec)) != 64:  # pragma: no cover - import guard
        raise RuntimeError("storeops.ledger: event body format drifted from canonical_json")


_self_check()


# --- verification, shared by backends ------------------------------------------------

EventRow = tuple[str, int, str, str, bytes, str, str]
"""(run_id, seq, type, at, body, prev_hash, hash) as a backend stores them."""

# Keys that, when present in event 1's data, must agree with the run row: the chain does
# not hash the run row, so this is how its identity fields become tamper-evident.
# data key -> RunRecord field ("sop" and "key" are the names run.started uses).
_RUN_FIELDS: Final = {
    "sop_id": "sop_id",
    "sop": "sop_id",
    "version": "version",
    "def_hash": "def_hash",
    "business_key": "business_key",
    "key": "business_key",
    "parent_run": "parent_run",
}


def check_chains(
    runs: Mapping[str, RunRecord], rows: Iterable[EventRow], report: VerifyReport
) -> None:
    """Check stored events ordered by (run_id, seq) against their run rows, adding counts
    and the first problem of each run to `report`. Backends feed their rows straight in.

    Per event, in this order: no gap in seq, the stored body hashes to the stored hash,
    the stored columns (run_id, seq, type, at, prev_hash) agree with the body, prev links
    to the previous hash (GENESIS for event 1). Per run: its row exists, identity fields
    that event 1's data records (sop/sop_id, version, def_hash, key/business_key,
    parent_run) equal the row's, and its head is the last event. Runs in `runs` without
    any event are reported too. Works on stored bytes only: bodies are not re-encoded
    (only event 1's is parsed).
    """
    sha = hashlib.sha256
    quote = encode_basestring
    problems = report.problems
    current: str | None = None
    run: RunRecord | None = None
    bad = True  # skip rows until the next run once a run has a problem
    prev = GENESIS
    expected = 1
    run_suffix = b""
    seen: set[str] = set()
    count = 0
    for run_id, seq, type_, at, body, prev_hash, hash_ in rows:
        count += 1
        if run_id != current:
            if current is not None and not bad and run is not None:
                _check_head(run, expected - 1, prev, problems)
            current = run_id
            seen.add(run_id)
            run = runs.get(run_id)
            prev, expected = GENESIS, 1
            run_suffix = f',"run":{quote(run_id)},"seq":'.encode()
            bad = run is None
            if run is None:
                problems.append(
                    VerifyProblem(
                        run_id,
                        None,
                        "events exist but the run row is missing — the run row was deleted",
                    )
                )
        if bad:
            continue
        bad = True
        if seq != expected:
            missing = f"event {expected}" if seq == expected + 1 else f"events {expected}–{seq - 1}"
            problems.append(
                VerifyProblem(run_id, expected, f"{missing} missing — a row was deleted")
            )
        elif sha(body).hexdigest() != hash_:
            problems.append(
                VerifyProblem(
                    run_id,
                    seq,
                    f"event {seq} ({type_}): hash does not match its content — the row was edited",
                )
            )
        elif not (
            body.startswith(f'{{"at":{quote(at)},"data":'.encode())
            and body.endswith(
                b"".join(
                    (
                        f',"prev":{quote(prev_hash)}'.encode(),
                        run_suffix,
                        f'{seq},"type":{quote(type_)}}}'.encode(),
                    )
                )
            )
        ):
            problems.append(
                VerifyProblem(
                    run_id, seq, _column_mismatch(run_id, seq, type_, at, body, prev_hash)
                )
            )
        elif prev_hash != prev:
            why = (
                "does not start from the genesis hash — rows were inserted before it"
                if seq == 1
                else "links to a different previous hash — rows were reordered or inserted, "
                f"or event {seq - 1} was rewritten"
            )
            problems.append(VerifyProblem(run_id, seq, f"event {seq} ({type_}) {why}"))
        elif seq == 1 and run is not None and (problem := _check_run_fields(run, body)) is not None:
            problems.append(problem)
        else:
            bad = False
            prev = hash_
            expected += 1
    if current is not None and not bad and run is not None:
        _check_head(run, expected - 1, prev, problems)
    report.events_checked += count
    report.runs_checked += len(seen)
    for run_id, record in runs.items():
        if run_id not in seen:  # every event of the run is gone
            report.runs_checked += 1
            _check_head(record, 0, GENESIS, problems)


def _check_head(run: RunRecord, last: int, last_hash: str, problems: list[VerifyProblem]) -> None:
    if last < run.head_seq:
        gone = "the last event was" if run.head_seq == last + 1 else "the last events were"
        problems.append(
            VerifyProblem(
                run.run_id,
                last + 1,
                f"run head says {run.head_seq} events, chain ends at {last} — {gone} deleted",
            )
        )
    elif last > run.head_seq:
        problems.append(
            VerifyProblem(
                run.run_id,
                run.head_seq + 1,
                f"run head says {run.head_seq} events, chain continues to {last} — "
                "events were added outside the ledger",
            )
        )
    elif last_hash != run.head_hash:
        problems.append(
            VerifyProblem(
                run.run_id,
                last,
                f"run head hash differs from event {last}'s hash — the last event was "
                "replaced or the run row edited",
            )
        )


def _column_mismatch(
    run_id: str, seq: int, type_: str, at: str, body: bytes, prev_hash: str
) -> str:
    # Slow path, only for a bad row: parse the body to say which column disagrees.
    try:
        said = json.loads(body)
    except ValueError:
        said = None
    if not isinstance(said, dict):
        return f"event {seq} ({type_}): stored body is not a JSON object — the row was edited"
    if said.get("seq") != seq:
        return (
            f"event {seq} ({type_}): its hashed body says it is event {said.get('seq')!r} — "
            "rows were reordered or renumbered"
        )
    for column, value, key in (
        ("type", type_, "type"),
        ("at", at, "at"),
        ("run_id", run_id, "run"),
        ("prev_hash", prev_hash, "prev"),
    ):
        if said.get(key) != value:
            return (
                f"event {seq} ({type_}): column {column} is {value!r} but the hashed body says "
                f"{said.get(key)!r} — the row was edited"
            )
    return f"event {seq} ({type_}): stored body is not in canonical form — the row was edited"


def _check_run_fields(run: RunRecord, body: bytes) -> VerifyProblem | None:
    data = json.loads(body).get("data")
    if not isinstance(data, dict):
        return None
    for key, name in _RUN_FIELDS.items():
        if key in data and data[key] != getattr(run, name):
            return VerifyProblem(
                run.run_id,
                None,
                f"run row says {name} {getattr(run, name)!r} but event 1 records "
                f"{data[key]!r} — the run row was edited",
            )
    return None


# --- the contract -------------------------------------------------------------------


class Ledger(abc.ABC):
    """Append-only, hash-chained store of runs, their events and SOP definitions.

    Every run is a chain: events numbered 1, 2, 3… without gaps, each hashing its body
    together with the previous hash. All writes are atomic; a failed call writes
    nothing. Implementations are safe to share between threads.
    """

    @abc.abstractmethod
    def create_run(self, record: RunRecord, first: NewEvent) -> StoredEvent:
        """Insert the run row and its event 1 (prev = GENESIS) in one transaction.

        `record.head_seq`/`head_hash` are ignored and set from the stored event.
        Raises RunExistsError if the run id is taken (nothing written).
        """

    @abc.abstractmethod
    def append(
        self, run_id: str, events: Sequence[NewEvent], expected_seq: int | None = None
    ) -> list[StoredEvent]:
        """Append `events` in order, all or none, in one transaction; return them stored.

        With `expected_seq`, the run's head must still be at that seq, else
        ConcurrentAppendError and nothing is written (optimistic concurrency: exactly
        one of several writers that read the same head wins). The run's head and
        `updated_at` (= last event's `at`) move in the same transaction; a
        `run.finished` event sets the status to its `data["status"]`. An empty `events`
        writes nothing but still checks the run and `expected_seq`.
        Raises RunNotFoundError, ValueError for invalid events (before writing).
        """

    @abc.abstractmethod
    def events(self, run_id: str, after_seq: int = 0) -> list[StoredEvent]:
        """The run's events with seq > `after_seq`, ordered by seq. RunNotFoundError."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run's row. Raises RunNotFoundError."""

    @abc.abstractmethod
    def runs(
        self, *, status: str | None = None, sop_id: str | None = None, limit: int | None = None
    ) -> list[RunRecord]:
        """Runs matching the filters, ordered by started_at then run_id, at most `limit`."""

    @abc.abstractmethod
    def find_run(
        self, sop_id: str, business_key: str, *, open_only: bool = True
    ) -> RunRecord | None:
        """The most recently started run of `sop_id` for `business_key`, or None.

        With `open_only`, runs that have a `run.finished` event are skipped.
        """

    @abc.abstractmethod
    def put_definition(self, def_hash: str, sop_id: str, version: int, bundle: bytes) -> None:
        """Store a definition bundle under its hash. Idempotent: storing the same hash
        again is a no-op. Raises ValueError if sha256_hex(bundle) != def_hash."""

    @abc.abstractmethod
    def get_definition(self, def_hash: str) -> bytes:
        """The bundle stored under `def_hash`. Raises DefinitionNotFoundError."""

    @abc.abstractmethod
    def set_wake(self, run_id: str, wake_at: str | None) -> None:
        """Record when a driver should next look at the run (None: nothing is due).

        A scheduling hint derived from the run's events, not a record: it is outside the
        hash chain and any driver may overwrite it. Timers survive restarts through it.
        """

    @abc.abstractmethod
    def due_runs(self, now: str, limit: int = 100) -> list[str]:
        """Open runs whose wake time is at or before `now`, earliest first."""

    @abc.abstractmethod
    def next_wake(self) -> str | None:
        """The earliest wake time of any open run, or None."""

    @abc.abstractmethod
    def verify(self, run_id: str | None = None) -> VerifyReport:
        """Check every run's chain (or one run's) and the definitions, reading a
        consistent snapshot; writers are not blocked for long and nothing is changed.

        Per run: seq contiguous from 1, each body hashes to its stored hash, the stored
        columns agree with the body, each prev links to the previous hash, and the run
        row's head equals the last event. Reports the first bad event of each run.
        Definitions must still hash to their key.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the backend's resources. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
