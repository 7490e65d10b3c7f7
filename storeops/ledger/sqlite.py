"""SQLite backend of the audit ledger: one database file, WAL, durable commits.

Edge module: imports the standard library (sqlite3) and `storeops.ledger.base` only;
never the engine, Prefect, httpx or ruamel. Every sqlite3 error leaving this module is
mapped to a `LedgerError` (with the original chained).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, Final, Literal

from storeops.ledger.base import (
    ConcurrentAppendError,
    DefinitionNotFoundError,
    Ledger,
    LedgerCorruptError,
    LedgerError,
    NewEvent,
    RunExistsError,
    RunNotFoundError,
    RunRecord,
    StoredEvent,
    VerifyProblem,
    VerifyReport,
    body_suffix,
    check_chains,
    check_timestamp,
    format_timestamp,
)
from storeops.ledger.canonical import GENESIS, sha256_hex
from storeops.ledger.prepare import Prepared, check_record, prepare

__all__ = ["SCHEMA_VERSION", "SqliteLedger"]

SCHEMA_VERSION: Final = 2
"""Stored in `PRAGMA user_version`; bumped with any change to tables or body format."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY NOT NULL,
    sop_id       TEXT NOT NULL,
    version      INTEGER NOT NULL,
    def_hash     TEXT NOT NULL,
    business_key TEXT,
    status       TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    head_seq     INTEGER NOT NULL,
    head_hash    TEXT NOT NULL,
    parent_run   TEXT,
    finished_at  TEXT  -- `at` of the run.finished event, NULL while the run is open
);
CREATE INDEX IF NOT EXISTS runs_by_business_key ON runs (sop_id, business_key);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at, run_id);
CREATE TABLE IF NOT EXISTS events (
    run_id    TEXT NOT NULL REFERENCES runs (run_id),
    seq       INTEGER NOT NULL,
    type      TEXT NOT NULL,
    at        TEXT NOT NULL,
    body      BLOB NOT NULL,  -- the exact canonical bytes that `hash` covers
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wakes (
    run_id  TEXT PRIMARY KEY NOT NULL REFERENCES runs (run_id),
    wake_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS wakes_by_time ON wakes (wake_at);
CREATE TABLE IF NOT EXISTS definitions (
    def_hash  TEXT PRIMARY KEY NOT NULL,
    sop_id    TEXT NOT NULL,
    version   INTEGER NOT NULL,
    bundle    BLOB NOT NULL,
    stored_at TEXT NOT NULL
);
"""

_RUN_COLUMNS: Final = (
    "run_id, sop_id, version, def_hash, business_key, status, started_at, updated_at, "
    "head_seq, head_hash, parent_run"
)


class SqliteLedger(Ledger):
    """Ledger in one SQLite file (or `:memory:`, private to this object).

    One connection guarded by a lock, so an instance can be shared by threads; several
    instances or processes on one file serialise their writes with `BEGIN IMMEDIATE`.
    Commits are durable with the default `synchronous="FULL"`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL",
        busy_timeout: float = 10.0,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.path = os.fspath(path)
        self._memory = self.path == ":memory:"
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        if not self._memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Several processes opening a new file at once: switching it to WAL and creating
        # the schema can meet "database is locked" without SQLite's busy handler ever
        # waiting, so setting up is retried with backoff until the busy timeout.
        deadline = time.monotonic() + busy_timeout
        for attempt in itertools.count(1):
            try:
                self._set_up(synchronous)
                return
            except sqlite3.OperationalError as exc:
                self.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise LedgerError(
                        f"ledger {self.path}: cannot open the database: {exc}"
                    ) from exc
                time.sleep(min(0.2, 0.005 * attempt) * (1 + random.random()))
            except BaseException as exc:
                self.close()
                if isinstance(exc, sqlite3.Error):
                    raise LedgerError(
                        f"ledger {self.path}: cannot open the database: {exc}"
                    ) from exc
                raise

    def _set_up(self, synchronous: str) -> None:
        conn = self._conn = self._connect()
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if not self._memory and str(mode).lower() != "wal":
            raise LedgerError(
                f"ledger {self.path}: SQLite refused WAL journal mode (got {mode!r}); "
                "the file must be on a local disk"
            )
        self._create_schema(conn)

    def __repr__(self) -> str:
        return f"SqliteLedger({self.path!r})"

    # --- connection plumbing ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # guarded by self._lock
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found == SCHEMA_VERSION:
            return
        if found > SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {self.path}: schema version {found} is newer than this storeops "
                f"supports ({SCHEMA_VERSION}); upgrade storeops"
            )
        conn.execute("BEGIN IMMEDIATE")  # two processes creating the file at once
        try:
            # Every statement is CREATE ... IF NOT EXISTS, so version 1 files (without the
            # wakes table) are brought up to date by the same DDL.
            for statement in _SCHEMA.split(";"):  # no ";" inside the DDL, comments included
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"ledger {self.path} is closed")
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- writes ----------------------------------------------------------------------

    def create_run(self, record: RunRecord, first: NewEvent) -> StoredEvent:
        check_record(record)
        prepared = prepare(record.run_id, [first])
        with self._lock:
            conn = self._live()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    exists = conn.execute(
                        "SELECT 1 FROM runs WHERE run_id = ?", (record.run_id,)
                    ).fetchone()
                    if exists is not None:
                        raise RunExistsError(f"run {record.run_id} already exists in the ledger")
                    conn.execute(
                        f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,0,?,?)",
                        (
                            record.run_id,
                            record.sop_id,
                            record.version,
                            record.def_hash,
                            record.business_key,
                            record.status,
                            record.started_at,
                            record.updated_at,
                            GENESIS,
                            record.parent_run,
                        ),
                    )
                    stored = self._write(conn, record.run_id, 0, GENESIS, prepared, touch=False)
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise _mapped(exc, f"run {record.run_id}: creating the run failed") from exc
        return stored[0]

    def append(
        self, run_id: str, events: Sequence[NewEvent], expected_seq: int | None = None
    ) -> list[StoredEvent]:
        prepared = prepare(run_id, events)
        with self._lock:
            conn = self._live()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute(
                        "SELECT head_seq, head_hash FROM runs WHERE run_id = ?", (run_id,)
                    ).fetchone()
                    if row is None:
                        raise RunNotFoundError(f"run {run_id} is not in the ledger")
                    head_seq, head_hash = row
                    if expected_seq is not None and head_seq != expected_seq:
                        raise ConcurrentAppendError(run_id, expected_seq, head_seq)
                    stored = self._write(conn, run_id, head_seq, head_hash, prepared, touch=True)
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise _mapped(exc, f"run {run_id}: appending {len(events)} events failed") from exc
        return stored

    @staticmethod
    def _write(
        conn: sqlite3.Connection,
        run_id: str,
        seq: int,
        prev: str,
        prepared: list[Prepared],
        *,
        touch: bool,
    ) -> list[StoredEvent]:
        # Inside the caller's transaction: chain, insert, move the head.
        rows = []
        stored = []
        finished_status = finished_at = None
        for type_, at, head, data, status in prepared:
            seq += 1
            body = head + body_suffix(run_id, seq, type_, prev)
            digest = sha256(body).hexdigest()
            rows.append((run_id, seq, type_, at, body, prev, digest))
            stored.append(StoredEvent(run_id, seq, type_, at, data, prev, digest))
            if status is not None:
                finished_status, finished_at = status, at
            prev = digest
        if not rows:
            return stored
        conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?)", rows)
        conn.execute(
            "UPDATE runs SET head_seq = ?, head_hash = ?,"
            " updated_at = CASE WHEN ? THEN ? ELSE updated_at END,"
            " status = COALESCE(?, status), finished_at = COALESCE(?, finished_at)"
            " WHERE run_id = ?",
            (seq, prev, touch, rows[-1][3], finished_status, finished_at, run_id),
        )
        return stored

    def put_definition(self, def_hash: str, sop_id: str, version: int, bundle: bytes) -> None:
        actual = sha256_hex(bundle)
        if actual != def_hash:
            raise ValueError(
                f"definition {sop_id} v{version}: bundle hashes to {actual}, not to the "
                f"given key {def_hash}"
            )
        stored_at = format_timestamp(datetime.now(UTC))  # bookkeeping, not event content
        with self._lock:
            conn = self._live()
            try:
                inserted = conn.execute(
                    "INSERT OR IGNORE INTO definitions VALUES (?,?,?,?,?)",
                    (def_hash, sop_id, version, bundle, stored_at),
                ).rowcount
                old = None
                if not inserted:
                    old = conn.execute(
                        "SELECT sop_id, version FROM definitions WHERE def_hash = ?", (def_hash,)
                    ).fetchone()
            except sqlite3.Error as exc:
                raise _mapped(exc, f"definition {sop_id} v{version}: storing failed") from exc
        if old is not None and tuple(old) != (sop_id, version):
            raise ValueError(
                f"definition {def_hash} is already stored as {old[0]} v{old[1]}, "
                f"not {sop_id} v{version}"
            )

    # --- reads -----------------------------------------------------------------------

    def get_definition(self, def_hash: str) -> bytes:
        row = self._fetchone("SELECT bundle FROM definitions WHERE def_hash = ?", (def_hash,))
        if row is None:
            raise DefinitionNotFoundError(f"no definition is stored under hash {def_hash}")
        bundle = bytes(row[0])
        if sha256_hex(bundle) != def_hash:
            raise LedgerCorruptError(
                f"definition {def_hash}: stored bytes no longer hash to their key — "
                "the definition was edited; run `verify`"
            )
        return bundle

    def events(self, run_id: str, after_seq: int = 0) -> list[StoredEvent]:
        with self._lock:
            conn = self._live()
            try:
                rows = conn.execute(
                    "SELECT seq, type, at, body, prev_hash, hash FROM events"
                    " WHERE run_id = ? AND seq > ? ORDER BY seq",
                    (run_id, after_seq),
                ).fetchall()
                if (
                    not rows
                    and conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                    is None
                ):
                    raise RunNotFoundError(f"run {run_id} is not in the ledger")
            except sqlite3.Error as exc:
                raise _mapped(exc, f"run {run_id}: reading events failed") from exc
        loads = json.loads
        out = []
        for seq, type_, at, body, prev_hash, hash_ in rows:
            try:
                data = loads(body)["data"]
            except (ValueError, KeyError, TypeError) as exc:
                raise LedgerCorruptError(
                    f"run {run_id}: event {seq} ({type_}) has an unreadable body — "
                    "the row was edited; run `verify`"
                ) from exc
            out.append(StoredEvent(run_id, seq, type_, at, data, prev_hash, hash_))
        return out

    def get_run(self, run_id: str) -> RunRecord:
        row = self._fetchone(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        if row is None:
            raise RunNotFoundError(f"run {run_id} is not in the ledger")
        return RunRecord(*row)

    def runs(
        self, *, status: str | None = None, sop_id: str | None = None, limit: int | None = None
    ) -> list[RunRecord]:
        sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE 1"
        params: list[object] = []
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        if sop_id is not None:
            sql += " AND sop_id = ?"
            params.append(sop_id)
        sql += " ORDER BY started_at, run_id LIMIT ?"
        params.append(-1 if limit is None else limit)
        return [RunRecord(*row) for row in self._fetchall(sql, params)]

    def find_run(
        self, sop_id: str, business_key: str, *, open_only: bool = True
    ) -> RunRecord | None:
        sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE sop_id = ? AND business_key = ?"
        if open_only:
            sql += " AND finished_at IS NULL"
        sql += " ORDER BY started_at DESC, run_id DESC LIMIT 1"
        row = self._fetchone(sql, (sop_id, business_key))
        return None if row is None else RunRecord(*row)

    def _fetchall(self, sql: str, params: Sequence[object]) -> list[Any]:
        with self._lock:
            try:
                return self._live().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _mapped(exc, "reading the ledger failed") from exc

    def _fetchone(self, sql: str, params: Sequence[object]) -> Any:
        rows = self._fetchall(sql, params)
        return rows[0] if rows else None

    # --- verification ----------------------------------------------------------------

    def set_wake(self, run_id: str, wake_at: str | None) -> None:
        if wake_at is not None:
            check_timestamp(wake_at, f"run {run_id}: wake_at")
        with self._lock:
            conn = self._live()
            try:
                if wake_at is None:
                    conn.execute("DELETE FROM wakes WHERE run_id = ?", (run_id,))
                else:
                    conn.execute(
                        "INSERT INTO wakes (run_id, wake_at) VALUES (?, ?) "
                        "ON CONFLICT (run_id) DO UPDATE SET wake_at = excluded.wake_at",
                        (run_id, wake_at),
                    )
            except sqlite3.IntegrityError as exc:
                raise RunNotFoundError(f"no run {run_id!r} in ledger {self.path}") from exc
            except sqlite3.Error as exc:
                raise _mapped(exc, f"run {run_id}: setting its wake time") from exc

    def due_runs(self, now: str, limit: int = 100) -> list[str]:
        rows = self._fetchall(
            "SELECT w.run_id FROM wakes w JOIN runs r ON r.run_id = w.run_id "
            "WHERE w.wake_at <= ? AND r.finished_at IS NULL ORDER BY w.wake_at LIMIT ?",
            (now, limit),
        )
        return [row[0] for row in rows]

    def next_wake(self) -> str | None:
        row = self._fetchone(
            "SELECT MIN(w.wake_at) FROM wakes w JOIN runs r ON r.run_id = w.run_id "
            "WHERE r.finished_at IS NULL",
            (),
        )
        return None if row is None else row[0]

    def verify(self, run_id: str | None = None) -> VerifyReport:
        if self._memory:  # a :memory: database exists only on our own connection
            with self._lock:
                return self._verify(self._live(), run_id)
        # A private read connection: one consistent snapshot, and writers on this
        # instance are not held up for the length of the scan.
        self._live()
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise _mapped(exc, "opening the ledger for verification failed") from exc
        try:
            conn.execute("PRAGMA query_only = ON")
            return self._verify(conn, run_id)
        finally:
            conn.close()

    def _verify(self, conn: sqlite3.Connection, run_id: str | None) -> VerifyReport:
        where, params = ("", ()) if run_id is None else (" WHERE run_id = ?", (run_id,))
        try:
            conn.execute("BEGIN")
            try:
                runs = {
                    row[0]: RunRecord(*row)
                    for row in conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs{where}", params)
                }
                report = VerifyReport(runs_checked=0, events_checked=0)
                cursor = conn.execute(
                    "SELECT run_id, seq, type, at, body, prev_hash, hash FROM events"
                    f"{where} ORDER BY run_id, seq",
                    params,
                )
                check_chains(runs, cursor, report)
                if run_id is not None and report.runs_checked == 0:
                    raise RunNotFoundError(f"run {run_id} is not in the ledger")
                self._verify_definitions(conn, run_id, report)
            finally:
                _rollback(conn)
        except sqlite3.Error as exc:
            raise _mapped(exc, "verifying the ledger failed") from exc
        return report

    @staticmethod
    def _verify_definitions(
        conn: sqlite3.Connection, run_id: str | None, report: VerifyReport
    ) -> None:
        sql = "SELECT def_hash, sop_id, version, bundle FROM definitions"
        params: tuple[str, ...] = ()
        if run_id is not None:
            sql += " WHERE def_hash = (SELECT def_hash FROM runs WHERE run_id = ?)"
            params = (run_id,)
        for def_hash, sop_id, version, bundle in conn.execute(sql, params):
            report.definitions_checked += 1
            if sha256(bundle).hexdigest() != def_hash:
                report.problems.append(
                    VerifyProblem(
                        "",
                        None,
                        f"definition {def_hash[:12]}… ({sop_id} v{version}): stored bytes no "
                        "longer hash to their key — the definition was edited",
                        def_hash=def_hash,
                    )
                )


def _rollback(conn: sqlite3.Connection) -> None:
    # A failed COMMIT may already have ended the transaction; never mask the real error.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _mapped(exc: sqlite3.Error, what: str) -> LedgerError:
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return LedgerError(
            f"{what}: the database stayed locked by another writer past the busy timeout "
            f"({exc}); retry later"
        )
    return LedgerError(f"{what}: {type(exc).__name__}: {exc}")
