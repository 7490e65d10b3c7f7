"""PostgreSQL backend of the audit ledger: same contract, records and chain as SQLite.

Edge module: imports the standard library, asyncpg and `storeops.ledger` (base, and the
event validation shared with the SQLite backend) only; never the engine, Prefect, httpx
or ruamel. asyncpg is asynchronous and the `Ledger` API is not: each instance runs a
private event loop in a daemon thread, so it also works when the caller is itself inside
a running event loop. Every asyncpg error leaving this module is mapped to a
`LedgerError` (with the original chained).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import re
import threading
import weakref
from collections.abc import Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

# Event validation and encoding are shared with the SQLite backend (ledger/prepare.py).
from storeops.ledger.base import (
    ConcurrentAppendError,
    DefinitionNotFoundError,
    EventRow,
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

__all__ = ["SCHEMA_VERSION", "PostgresLedger"]

SCHEMA_VERSION: Final = 2
"""Stored in the `ledger_meta` table; bumped with any change to tables or body format."""

DEFAULT_SCHEMA: Final = "public"
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_VERIFY_CHUNK: Final = 5000  # rows per round trip while streaming a verification
_HEADS_KEPT: Final = 4096  # run heads remembered for the one-statement append

# Tables carry a `ledger_` prefix: a ledger sharing a database (and the public schema)
# with a Prefect server must not meet Prefect's own `events` table. Text columns use the
# "C" collation, so ordering and equality are by bytes, as in SQLite.
_DDL: Final = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.ledger_meta (
    key   text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.ledger_runs (
    run_id       text COLLATE "C" PRIMARY KEY,
    sop_id       text COLLATE "C" NOT NULL,
    version      bigint NOT NULL,
    def_hash     text COLLATE "C" NOT NULL,
    business_key text COLLATE "C",
    status       text COLLATE "C" NOT NULL,
    started_at   text COLLATE "C" NOT NULL,
    updated_at   text COLLATE "C" NOT NULL,
    head_seq     bigint NOT NULL,
    head_hash    text COLLATE "C" NOT NULL,
    parent_run   text COLLATE "C",
    finished_at  text COLLATE "C"  -- `at` of the run.finished event, NULL while open
);
CREATE INDEX IF NOT EXISTS ledger_runs_by_business_key
    ON {s}.ledger_runs (sop_id, business_key);
CREATE INDEX IF NOT EXISTS ledger_runs_by_status ON {s}.ledger_runs (status);
CREATE INDEX IF NOT EXISTS ledger_runs_by_start ON {s}.ledger_runs (started_at, run_id);
CREATE TABLE IF NOT EXISTS {s}.ledger_events (
    run_id    text COLLATE "C" NOT NULL REFERENCES {s}.ledger_runs (run_id),
    seq       bigint NOT NULL,
    type      text COLLATE "C" NOT NULL,
    at        text COLLATE "C" NOT NULL,
    body      bytea NOT NULL,  -- the exact canonical bytes that `hash` covers
    prev_hash text COLLATE "C" NOT NULL,
    hash      text COLLATE "C" NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS {s}.ledger_wakes (
    run_id  text COLLATE "C" PRIMARY KEY REFERENCES {s}.ledger_runs (run_id),
    wake_at text COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_wakes_by_time ON {s}.ledger_wakes (wake_at);
CREATE TABLE IF NOT EXISTS {s}.ledger_definitions (
    def_hash  text COLLATE "C" PRIMARY KEY,
    sop_id    text COLLATE "C" NOT NULL,
    version   bigint NOT NULL,
    bundle    bytea NOT NULL,
    stored_at text COLLATE "C" NOT NULL
);
"""

_RUN_COLUMNS: Final = (
    "run_id, sop_id, version, def_hash, business_key, status, started_at, updated_at, "
    "head_seq, head_hash, parent_run"
)

# Session settings every pooled connection starts with: commits are durable whatever
# the server's default, and transactions are READ COMMITTED (per-run row locks do the
# serialising; SERIALIZABLE only adds retries, see NOTES.md).
_SERVER_SETTINGS: Final = {
    "application_name": "storeops-ledger",
    "synchronous_commit": "on",
    "default_transaction_isolation": "read committed",
}

T = TypeVar("T")


class _Connection(asyncpg.Connection):  # type: ignore[misc]  # untyped base class
    """Pooled connection released without asyncpg's reset query (one round trip
    saved per call): the ledger sets no session state, takes only transaction-scoped
    advisory locks and opens cursors only inside transactions, which end on release."""

    def get_reset_query(self) -> str:
        return ""


class _Sql:
    """The statements, with the schema name quoted in once."""

    def __init__(self, schema: str) -> None:
        s = f'"{schema}"'
        self.schema = s
        self.ddl = [part.strip() for part in _DDL.format(s=s).split(";") if part.strip()]
        self.meta_table = f"{s}.ledger_meta"
        self.version = f"SELECT value FROM {s}.ledger_meta WHERE key = 'schema_version'"
        self.set_version = (
            f"INSERT INTO {s}.ledger_meta VALUES ('schema_version', $1)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        )
        # One statement, so atomic without BEGIN: the run row and its event 1. A taken
        # id inserts nothing (waiting for a concurrent creator to commit first).
        self.create_run = (
            f"WITH new_run AS (INSERT INTO {s}.ledger_runs ({_RUN_COLUMNS}, finished_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11)"
            " ON CONFLICT (run_id) DO NOTHING RETURNING run_id)"
            f" INSERT INTO {s}.ledger_events (run_id, seq, type, at, body, prev_hash, hash)"
            " SELECT run_id, 1, $12::text, $13::text, $14::bytea, $15::text, $9::text"
            " FROM new_run RETURNING seq"
        )
        # NO KEY UPDATE excludes other appenders to the run just as FOR UPDATE does, but
        # not the key-share locks of foreign-key checks.
        self.lock_head = (
            f"SELECT head_seq, head_hash FROM {s}.ledger_runs WHERE run_id = $1 FOR NO KEY UPDATE"
        )
        self.head = f"SELECT head_seq FROM {s}.ledger_runs WHERE run_id = $1"
        # The fast path, one statement: move the head only if it is still where this
        # instance last saw it (the UPDATE takes the row lock and re-checks after waiting),
        # and insert the events only if it moved. Same arguments as `write`, plus the
        # head the events were chained on.
        self.swap = (
            f"WITH moved AS (UPDATE {s}.ledger_runs SET head_seq = $8, head_hash = $9,"
            " updated_at = $10, status = COALESCE($11, status),"
            " finished_at = COALESCE($12, finished_at)"
            " WHERE run_id = $1 AND head_seq = $13 AND head_hash = $14 RETURNING run_id),"
            f" new_events AS (INSERT INTO {s}.ledger_events"
            " (run_id, seq, type, at, body, prev_hash, hash)"
            " SELECT moved.run_id, e.* FROM moved, unnest($2::bigint[], $3::text[],"
            " $4::text[], $5::bytea[], $6::text[], $7::text[]) AS e)"
            " SELECT count(*) FROM moved"
        )
        # One round trip for any batch size: the events as arrays, and the head moved by
        # the outer statement (a data-modifying WITH always runs to completion).
        self.write = (
            f"WITH new_events AS (INSERT INTO {s}.ledger_events"
            " (run_id, seq, type, at, body, prev_hash, hash)"
            " SELECT $1::text, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bytea[],"
            " $6::text[], $7::text[]))"
            f" UPDATE {s}.ledger_runs SET head_seq = $8, head_hash = $9, updated_at = $10,"
            " status = COALESCE($11, status), finished_at = COALESCE($12, finished_at)"
            " WHERE run_id = $1"
        )
        self.events = (
            f"SELECT seq, type, at, body, prev_hash, hash FROM {s}.ledger_events"
            " WHERE run_id = $1 AND seq > $2 ORDER BY seq"
        )
        self.exists = f"SELECT 1 FROM {s}.ledger_runs WHERE run_id = $1"
        self.run = f"SELECT {_RUN_COLUMNS} FROM {s}.ledger_runs WHERE run_id = $1"
        self.runs = f"SELECT {_RUN_COLUMNS} FROM {s}.ledger_runs"
        self.put_definition = (
            f"INSERT INTO {s}.ledger_definitions VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (def_hash) DO NOTHING RETURNING 1"
        )
        self.definition_name = (
            f"SELECT sop_id, version FROM {s}.ledger_definitions WHERE def_hash = $1"
        )
        self.definition = f"SELECT bundle FROM {s}.ledger_definitions WHERE def_hash = $1"
        self.chain = f"SELECT run_id, seq, type, at, body, prev_hash, hash FROM {s}.ledger_events"
        self.definitions = f"SELECT def_hash, sop_id, version, bundle FROM {s}.ledger_definitions"
        self.run_definition = (
            f" WHERE def_hash = (SELECT def_hash FROM {s}.ledger_runs WHERE run_id = $1)"
        )


class PostgresLedger(Ledger):
    """Ledger in a PostgreSQL database, in the schema named by the URL's `?schema=`
    parameter (default `public`); tables `ledger_runs`, `ledger_events`,
    `ledger_definitions` and `ledger_meta` are created there if missing.

    `url` is `postgresql://user[:password]@host[:port]/database[?schema=name&…]`
    (`postgres://` and `postgresql+asyncpg://` too); other query parameters go to asyncpg
    (`sslmode`, …). Appends to one run are serialised by a lock on its row, so any
    number of instances and processes may share a database; an instance may be shared
    by threads (up to `pool_size` statements run at once). Commits are durable
    (`synchronous_commit=on`).

    An append is one statement when this instance knows the run's head (it created the
    run or appended last): it chains on that head and moves it only if the stored head
    is still the same. Otherwise, or when that fails, it locks the run row, reads the
    head, checks `expected_seq` and writes, in one READ COMMITTED transaction.

    `timeout` bounds each statement on the server (`statement_timeout`, lock waits
    included), the wait for a pooled connection and connecting: when it passes, the call
    raises LedgerError and nothing was written. Only if the server stops answering
    altogether does a call give up on its own side, after `2 * timeout + 5` seconds, and
    then its outcome is unknown (the message says so).
    """

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 30.0) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        dsn, schema, self.where = _parse_url(url)
        self.schema = schema
        self._timeout = timeout
        self._deadline = 2 * timeout + 5  # server gone quiet: stop waiting for it
        self._sql = _Sql(schema)
        self._state = threading.Lock()  # guards _closed against submissions
        # run id -> (head_seq, head_hash) as last seen; a guess, checked by every write.
        # Touched only on the loop thread.
        self._heads: dict[str, tuple[int, str]] = {}
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=_run_loop, args=(self._loop,), name=f"ledger-{self.where}", daemon=True
        )
        self._thread.start()
        self._pool: Any = None
        self._pool_holder: list[Any] = [None]  # what the finalizer closes
        # Stops the loop thread and closes the pool on close(), on garbage collection
        # and at interpreter exit, whichever comes first (and only once).
        self._finalizer = weakref.finalize(
            self, _shutdown, self._loop, self._thread, self._pool_holder
        )
        try:
            self._pool = self._pool_holder[0] = self._call(
                _open_pool(dsn, pool_size, timeout), "opening the database failed"
            )
            self._call(self._create_schema(), "cannot create the ledger tables")
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresLedger({self.where!r})"

    # --- loop plumbing ---------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        """Run `coro` on the private loop and wait for it; map driver errors."""
        with self._state:
            if self._closed:
                coro.close()
                raise LedgerError(f"ledger {self.where} is closed")
            if threading.current_thread() is self._thread:
                coro.close()
                raise LedgerError(
                    f"ledger {self.where}: called from its own event loop thread, which "
                    "would wait for itself; call it from another thread"
                )
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(self._deadline)
        except LedgerError:
            raise
        except TimeoutError as exc:
            if not future.done():
                future.cancel()
                raise LedgerError(
                    f"ledger {self.where}: {what}: no answer from PostgreSQL within "
                    f"{self._deadline:g} s; whether anything was written is unknown — "
                    "check the server, re-read the run's events and retry"
                ) from exc
            raise _mapped(exc, self.where, what, self._timeout) from exc
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            OSError,
            concurrent.futures.CancelledError,
        ) as exc:
            raise _mapped(exc, self.where, what, self._timeout) from exc

    def _connection(self) -> Any:
        """`async with self._connection() as conn`: a pooled connection."""
        return self._pool.acquire(timeout=self._timeout)

    async def _create_schema(self) -> None:
        sql = self._sql
        async with self._connection() as conn:
            if await self._schema_version(conn) == SCHEMA_VERSION:
                return  # the usual case; needs no DDL rights
            async with conn.transaction():
                # Two processes starting at once: the second waits, then finds the tables.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    f"storeops.ledger.schema:{self.schema}",
                )
                found = await self._schema_version(conn)
                if found == SCHEMA_VERSION:
                    return
                for statement in sql.ddl:
                    await conn.execute(statement)
                await conn.execute(sql.set_version, str(SCHEMA_VERSION))

    async def _schema_version(self, conn: Any) -> int | None:
        if await conn.fetchval("SELECT to_regclass($1)", self._sql.meta_table) is None:
            return None
        text = await conn.fetchval(self._sql.version)
        if text is None:
            return None
        found = int(text)
        if found > SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {self.where}: schema version {found} is newer than this storeops "
                f"supports ({SCHEMA_VERSION}); upgrade storeops"
            )
        if found < 1:
            raise LedgerError(
                f"ledger {self.where}: unknown schema version {found} in ledger_meta; "
                f"expected {SCHEMA_VERSION}"
            )
        return found  # older versions are brought up to date by the additive DDL

    def close(self) -> None:
        with self._state:
            self._closed = True
        self._finalizer()

    # --- writes ----------------------------------------------------------------------

    def create_run(self, record: RunRecord, first: NewEvent) -> StoredEvent:
        check_record(record)
        prepared = prepare(record.run_id, [first])
        rows, stored, status, finished_at = _chain(record.run_id, 0, GENESIS, prepared)
        _, _, type_, at_, body, prev, digest = rows[0]
        args = (
            record.run_id,
            record.sop_id,
            record.version,
            record.def_hash,
            record.business_key,
            status or record.status,
            record.started_at,
            record.updated_at,
            digest,
            record.parent_run,
            finished_at,
            type_,
            at_,
            body,
            prev,
        )
        created = self._call(
            self._create_run(record.run_id, args), f"run {record.run_id}: creating the run failed"
        )
        if not created:
            raise RunExistsError(f"run {record.run_id} already exists in the ledger")
        return stored[0]

    async def _create_run(self, run_id: str, args: tuple[Any, ...]) -> bool:
        async with self._connection() as conn:
            if await conn.fetchval(self._sql.create_run, *args) is None:
                return False
        self._remember(run_id, 1, args[8])
        return True

    def append(
        self, run_id: str, events: Sequence[NewEvent], expected_seq: int | None = None
    ) -> list[StoredEvent]:
        prepared = prepare(run_id, events)
        return self._call(
            self._append(run_id, prepared, expected_seq),
            f"run {run_id}: appending {len(events)} events failed",
        )

    async def _append(
        self, run_id: str, prepared: list[Prepared], expected_seq: int | None
    ) -> list[StoredEvent]:
        sql = self._sql
        async with self._connection() as conn:
            if not prepared:  # nothing to write: only the checks
                head = await conn.fetchval(sql.head, run_id)
                _check_head(run_id, head, expected_seq)
                return []
            seen = self._heads.get(run_id)
            if seen is not None and expected_seq in (None, seen[0]):
                # Fast path, one round trip: chain on the head this instance last saw.
                rows, stored, status, finished_at = _chain(run_id, *seen, prepared)
                args = _write_args(run_id, rows, status, finished_at)
                if await conn.fetchval(sql.swap, *args, *seen):
                    self._remember(run_id, rows[-1][1], rows[-1][6])
                    return stored
                # Another writer moved the head (or the run is gone): nothing was
                # written; do it the careful way.
            async with conn.transaction(isolation="read_committed"):
                row = await conn.fetchrow(sql.lock_head, run_id)  # waits for other appenders
                if row is not None:
                    self._remember(run_id, *row)
                _check_head(run_id, None if row is None else row[0], expected_seq)
                rows, stored, status, finished_at = _chain(run_id, row[0], row[1], prepared)
                await conn.execute(sql.write, *_write_args(run_id, rows, status, finished_at))
        self._remember(run_id, rows[-1][1], rows[-1][6])
        return stored

    def _remember(self, run_id: str, head_seq: int, head_hash: str) -> None:
        heads = self._heads
        heads.pop(run_id, None)  # most recent last
        heads[run_id] = (head_seq, head_hash)
        if len(heads) > _HEADS_KEPT:
            del heads[next(iter(heads))]

    def put_definition(self, def_hash: str, sop_id: str, version: int, bundle: bytes) -> None:
        actual = sha256_hex(bundle)
        if actual != def_hash:
            raise ValueError(
                f"definition {sop_id} v{version}: bundle hashes to {actual}, not to the "
                f"given key {def_hash}"
            )
        stored_at = format_timestamp(datetime.now(UTC))  # bookkeeping, not event content
        old = self._call(
            self._put_definition(def_hash, sop_id, version, bytes(bundle), stored_at),
            f"definition {sop_id} v{version}: storing failed",
        )
        if old is not None and tuple(old) != (sop_id, version):
            raise ValueError(
                f"definition {def_hash} is already stored as {old[0]} v{old[1]}, "
                f"not {sop_id} v{version}"
            )

    async def _put_definition(
        self, def_hash: str, sop_id: str, version: int, bundle: bytes, stored_at: str
    ) -> Any:
        async with self._connection() as conn:
            sql = self._sql
            if await conn.fetchval(
                sql.put_definition, def_hash, sop_id, version, bundle, stored_at
            ):
                return None
            return await conn.fetchrow(sql.definition_name, def_hash)

    # --- reads -----------------------------------------------------------------------

    def get_definition(self, def_hash: str) -> bytes:
        bundle = self._call(
            self._fetchval(self._sql.definition, def_hash),
            f"definition {def_hash}: reading failed",
        )
        if bundle is None:
            raise DefinitionNotFoundError(f"no definition is stored under hash {def_hash}")
        if sha256_hex(bundle) != def_hash:
            raise LedgerCorruptError(
                f"definition {def_hash}: stored bytes no longer hash to their key — "
                "the definition was edited; run `verify`"
            )
        return bytes(bundle)

    def events(self, run_id: str, after_seq: int = 0) -> list[StoredEvent]:
        rows = self._call(self._events(run_id, after_seq), f"run {run_id}: reading events failed")
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

    async def _events(self, run_id: str, after_seq: int) -> list[Any]:
        async with self._connection() as conn:
            rows: list[Any] = await conn.fetch(self._sql.events, run_id, after_seq)
            if not rows and await conn.fetchval(self._sql.exists, run_id) is None:
                raise RunNotFoundError(f"run {run_id} is not in the ledger")
            return rows

    def get_run(self, run_id: str) -> RunRecord:
        row = self._call(self._fetchrow(self._sql.run, run_id), f"run {run_id}: reading failed")
        if row is None:
            raise RunNotFoundError(f"run {run_id} is not in the ledger")
        return RunRecord(*row)

    def runs(
        self, *, status: str | None = None, sop_id: str | None = None, limit: int | None = None
    ) -> list[RunRecord]:
        sql = self._sql.runs
        params: list[object] = []
        for column, value in (("status", status), ("sop_id", sop_id)):
            if value is not None:
                params.append(value)
                sql += f" {'AND' if len(params) > 1 else 'WHERE'} {column} = ${len(params)}"
        # LIMIT NULL is no limit; a negative limit means none too, as in SQLite.
        params.append(None if limit is None or limit < 0 else limit)
        sql += f" ORDER BY started_at, run_id LIMIT ${len(params)}"
        rows = self._call(self._fetch(sql, *params), "reading the ledger's runs failed")
        return [RunRecord(*row) for row in rows]

    def find_run(
        self, sop_id: str, business_key: str, *, open_only: bool = True
    ) -> RunRecord | None:
        sql = f"{self._sql.runs} WHERE sop_id = $1 AND business_key = $2"
        if open_only:
            sql += " AND finished_at IS NULL"
        sql += " ORDER BY started_at DESC, run_id DESC LIMIT 1"
        row = self._call(
            self._fetchrow(sql, sop_id, business_key),
            f"finding the run of {sop_id} for {business_key} failed",
        )
        return None if row is None else RunRecord(*row)

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        async with self._connection() as conn:
            rows: list[Any] = await conn.fetch(sql, *args)
            return rows

    async def _fetchrow(self, sql: str, *args: object) -> Any:
        async with self._connection() as conn:
            return await conn.fetchrow(sql, *args)

    async def _fetchval(self, sql: str, *args: object) -> Any:
        async with self._connection() as conn:
            return await conn.fetchval(sql, *args)

    # --- verification ----------------------------------------------------------------

    def set_wake(self, run_id: str, wake_at: str | None) -> None:
        if wake_at is not None:
            check_timestamp(wake_at, f"run {run_id}: wake_at")
        s = self._sql.schema
        if wake_at is None:
            coro = self._execute(f"DELETE FROM {s}.ledger_wakes WHERE run_id = $1", run_id)
        else:
            coro = self._execute(
                f"INSERT INTO {s}.ledger_wakes (run_id, wake_at) VALUES ($1, $2) "
                "ON CONFLICT (run_id) DO UPDATE SET wake_at = EXCLUDED.wake_at",
                run_id,
                wake_at,
            )
        try:
            self._call(coro, f"run {run_id}: setting its wake time")
        except LedgerError as exc:
            if isinstance(exc.__cause__, asyncpg.ForeignKeyViolationError):
                raise RunNotFoundError(f"run {run_id} is not in the ledger") from exc
            raise

    def due_runs(self, now: str, limit: int = 100) -> list[str]:
        s = self._sql.schema
        rows = self._call(
            self._fetch(
                f"SELECT w.run_id FROM {s}.ledger_wakes w JOIN {s}.ledger_runs r "
                "ON r.run_id = w.run_id WHERE w.wake_at <= $1 AND r.finished_at IS NULL "
                "ORDER BY w.wake_at LIMIT $2",
                now,
                limit,
            ),
            "reading due runs",
        )
        return [str(row[0]) for row in rows]

    def next_wake(self) -> str | None:
        s = self._sql.schema
        found = self._call(
            self._fetchval(
                f"SELECT MIN(w.wake_at) FROM {s}.ledger_wakes w JOIN {s}.ledger_runs r "
                "ON r.run_id = w.run_id WHERE r.finished_at IS NULL"
            ),
            "reading the next wake time",
        )
        return None if found is None else str(found)

    async def _execute(self, sql: str, *args: object) -> None:
        async with self._connection() as conn:
            await conn.execute(sql, *args)

    def verify(self, run_id: str | None = None) -> VerifyReport:
        what = (
            "verifying the ledger failed" if run_id is None else f"run {run_id}: verifying failed"
        )
        snapshot = self._call(self._open_snapshot(run_id), what)
        try:
            _, runs, definitions, cursor = snapshot
            report = VerifyReport(runs_checked=0, events_checked=0)
            # Hashing runs here, in the caller's thread; the loop only moves rows.
            check_chains(
                {row[0]: RunRecord(*row) for row in runs},
                self._stream(cursor, what),
                report,
            )
        finally:
            self._call_cleanup(self._close_snapshot(snapshot[0]))
        if run_id is not None and report.runs_checked == 0:
            raise RunNotFoundError(f"run {run_id} is not in the ledger")
        for def_hash, sop_id, version, bundle in definitions:
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
        return report

    async def _open_snapshot(self, run_id: str | None) -> tuple[Any, list[Any], list[Any], Any]:
        # One REPEATABLE READ snapshot for runs, events and definitions; it takes no
        # locks, so appenders go on while the scan runs.
        sql = self._sql
        where, params = ("", ()) if run_id is None else (" WHERE run_id = $1", (run_id,))
        defs_where = "" if run_id is None else sql.run_definition
        conn = await self._pool.acquire(timeout=self._timeout)
        transaction = conn.transaction(isolation="repeatable_read", readonly=True)
        try:
            await transaction.start()
            runs = await conn.fetch(f"{sql.runs}{where}", *params)
            definitions = await conn.fetch(f"{sql.definitions}{defs_where}", *params)
            cursor = await conn.cursor(f"{sql.chain}{where} ORDER BY run_id, seq", *params)
        except BaseException:
            await self._close_snapshot((conn, transaction))
            raise
        return (conn, transaction), runs, definitions, cursor

    async def _close_snapshot(self, session: tuple[Any, Any]) -> None:
        conn, transaction = session
        try:
            # Read only: nothing to keep. InterfaceError: it never started, or failed.
            with contextlib.suppress(asyncpg.InterfaceError):
                await transaction.rollback()
        finally:
            await self._pool.release(conn)

    def _stream(self, cursor: Any, what: str) -> Iterator[EventRow]:
        while rows := self._call(cursor.fetch(_VERIFY_CHUNK), what):
            yield from rows

    def _call_cleanup(self, coro: Coroutine[Any, Any, None]) -> None:
        # Releasing must happen even when the ledger was closed meanwhile.
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop is closed: the pool went with it
            coro.close()
            return
        # A driver error here must not mask the error being raised, if any.
        with contextlib.suppress(
            asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError
        ):
            future.result(self._timeout)


# --- helpers ------------------------------------------------------------------------


def _parse_url(url: str) -> tuple[str, str, str]:
    """(dsn for asyncpg, schema, the URL without password for messages)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise LedgerError(
            f"cannot open ledger postgresql://{parts.hostname}: the port is not a number "
            f"from 0 to 65535 ({exc})"
        ) from exc
    scheme = parts.scheme.split("+", 1)[0].lower()
    if scheme not in ("postgresql", "postgres"):
        raise LedgerError(f"cannot open ledger: {scheme!r} is not a postgresql:// URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    rest = [(key, value) for key, value in query if key != "schema"]
    host = parts.hostname or "localhost"
    netloc = f"{unquote(parts.username)}@" if parts.username else ""
    netloc += f"[{host}]" if ":" in host else host
    netloc += f":{port}" if port else ""
    where = f"postgresql://{netloc}{parts.path}"
    schema = schemas[-1] if schemas else DEFAULT_SCHEMA
    if _SCHEMA_NAME.fullmatch(schema) is None:
        raise LedgerError(
            f"cannot open ledger {where}: schema {schema!r} is not allowed; use lowercase "
            "letters, digits and _, starting with a letter or _ (at most 63)"
        )
    if schema != DEFAULT_SCHEMA:
        where += f"?schema={schema}"
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), ""))
    return dsn, schema, where


def _chain(
    run_id: str, seq: int, prev: str, prepared: list[Prepared]
) -> tuple[list[EventRow], list[StoredEvent], str | None, str | None]:
    """Number and link prepared events after (seq, prev): the rows to insert, the events
    to return, and the status and time of a run.finished among them."""
    rows: list[EventRow] = []
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
    return rows, stored, finished_status, finished_at


def _write_args(
    run_id: str, rows: list[EventRow], status: str | None, finished_at: str | None
) -> tuple[object, ...]:
    """Arguments $1–$12 of the write statements: run id, the six event columns as
    arrays, then the new head's seq, hash and time, and a run.finished status and time."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    last = rows[-1]
    return (run_id, *columns[1:], last[1], last[6], last[3], status, finished_at)


def _check_head(run_id: str, head_seq: int | None, expected_seq: int | None) -> None:
    if head_seq is None:
        raise RunNotFoundError(f"run {run_id} is not in the ledger")
    if expected_seq is not None and head_seq != expected_seq:
        raise ConcurrentAppendError(run_id, expected_seq, head_seq)


def _mapped(exc: BaseException, where: str, what: str, timeout: float) -> LedgerError:
    if isinstance(exc, asyncpg.QueryCanceledError):
        return LedgerError(
            f"{what}: PostgreSQL stopped the statement after the {timeout:g} s timeout "
            f"(waiting for a lock another session holds?) — nothing was written; retry ({exc})"
        )
    if isinstance(exc, TimeoutError):
        return LedgerError(
            f"ledger {where}: {what}: no connection to PostgreSQL within {timeout:g} s "
            "(server unreachable, or every pooled connection busy) — nothing was written; "
            "retry"
        )
    if isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        return LedgerError(
            f"{what}: the transaction conflicted with a concurrent one ({exc}); nothing "
            "was written — retry"
        )
    if isinstance(exc, asyncpg.UniqueViolationError):
        return LedgerError(
            f"{what}: a row with the same key was written concurrently, bypassing the "
            f"ledger's locks ({exc.constraint_name}); nothing was written"
        )
    if isinstance(exc, OSError | asyncpg.InterfaceError | concurrent.futures.CancelledError):
        return LedgerError(
            f"ledger {where}: {what}: PostgreSQL is unreachable or the connection was "
            f"lost ({type(exc).__name__}: {exc}); check that the server runs and retry"
        )
    return LedgerError(f"{what}: {type(exc).__name__}: {exc}")


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


def _shutdown(loop: asyncio.AbstractEventLoop, thread: threading.Thread, pool: list[Any]) -> None:
    """Close the pool, then stop and close the loop. Holds no reference to the ledger
    (it runs from a weakref finalizer)."""
    if pool[0] is not None and thread.is_alive():
        future = asyncio.run_coroutine_threadsafe(_close_pool(pool[0]), loop)
        with contextlib.suppress(Exception):  # closing goes on; the pool was terminated
            future.result(15)
    if thread.is_alive():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
    if not thread.is_alive() and not loop.is_closed():
        loop.close()


async def _open_pool(dsn: str, size: int, timeout: float) -> Any:
    # Created on the private loop, which its connections then belong to.
    return await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        timeout=timeout,  # to connect
        server_settings={**_SERVER_SETTINGS, "statement_timeout": f"{int(timeout * 1000)}"},
        connection_class=_Connection,
    )


async def _close_pool(pool: Any) -> None:
    try:
        await asyncio.wait_for(pool.close(), 10)  # waits for calls still running
    except Exception:  # a timeout or a broken connection: do not wait any longer
        pool.terminate()
    # Let the transports deliver connection_lost before the loop stops.
    for _ in range(3):
        await asyncio.sleep(0)
