"""Tests of the PostgreSQL ledger on a real server: the shared contract (`LedgerContract`),
tamper detection through raw SQL, schema creation, timeouts, use from async code,
dispatch.

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth; another server with
STOREOPS_TEST_POSTGRES_URL). The session creates a throwaway database and drops it at
the end; every test works in its own schema (`?schema=`), so parallel runs never meet.
Without a server the tests skip, or fail if STOREOPS_REQUIRE_POSTGRES=1 (for CI).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from storeops.ledger import (
    GENESIS,
    Ledger,
    LedgerCorruptError,
    LedgerError,
    NewEvent,
    RunExistsError,
    canonical_json,
    open_ledger,
    sha256_hex,
)
from storeops.ledger.base import event_body
from storeops.ledger.postgres import SCHEMA_VERSION, PostgresLedger
from tests.ledger.test_ledger import (
    LedgerContract,
    at,
    completed,
    make_run,
    only_problem,
    record,
    started,
)


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def ledger_url(pg_database: str, schema: str) -> str:
    return f"{pg_database}?schema={schema}"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[PostgresLedger]:
    with PostgresLedger(ledger_url) as opened:
        yield opened


class RawSql:
    """A connection of our own to the test's schema, for tampering as an attacker with
    database access would: `session_replication_role = replica` turns off foreign keys
    and triggers for this session only. Each method is one autocommitted statement
    unless a transaction is opened with `execute("BEGIN")`."""

    def __init__(self, dsn: str, schema: str) -> None:
        self._runner = asyncio.Runner()
        self._conn = self._runner.run(asyncpg.connect(dsn, timeout=5))
        self._runner.run(
            self._conn.execute(
                f'SET search_path TO "{schema}"; SET session_replication_role = replica'
            )
        )

    def execute(self, sql: str, *args: object) -> None:
        self._runner.run(self._conn.execute(sql, *args))

    def fetchval(self, sql: str, *args: object) -> Any:
        return self._runner.run(self._conn.fetchval(sql, *args))

    def close(self) -> None:
        try:
            self._runner.run(self._conn.close())
        finally:
            self._runner.close()


@pytest.fixture
def raw(pg_database: str, schema: str, ledger: PostgresLedger) -> Iterator[RawSql]:
    # Depends on `ledger` so that the tables exist before tampering starts.
    conn = RawSql(pg_database, schema)
    try:
        yield conn
    finally:
        conn.close()


def ledger_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ledger-")]


# --- the contract -------------------------------------------------------------------


class TestPostgresLedger(LedgerContract):
    """The contract on PostgreSQL."""


# --- storage ------------------------------------------------------------------------


def test_stored_body_is_canonical_json_of_the_spec_dict(ledger: Ledger, raw: RawSql) -> None:
    data = {"actor": "zoë", "lines": [{"sku": "A-1", "qty": 2}], "note": 'quote " and \\'}
    ledger.create_run(record("run-1"), NewEvent("run.started", at(0), data))
    body = raw.fetchval("SELECT body FROM ledger_events")
    stored_hash = raw.fetchval("SELECT hash FROM ledger_events")
    spec = canonical_json(
        {
            "run": "run-1",
            "seq": 1,
            "type": "run.started",
            "at": at(0),
            "data": data,
            "prev": GENESIS,
        }
    )
    assert spec == body
    assert sha256_hex(spec) == stored_hash


def test_tables_live_in_the_named_schema_with_their_version(
    ledger_url: str, schema: str, raw: RawSql
) -> None:
    tables = raw.fetchval(
        "SELECT array_agg(table_name::text ORDER BY table_name) FROM information_schema.tables"
        " WHERE table_schema = $1",
        schema,
    )
    assert [
        "ledger_definitions",
        "ledger_events",
        "ledger_meta",
        "ledger_runs",
        "ledger_wakes",
    ] == tables
    assert str(SCHEMA_VERSION) == raw.fetchval(
        "SELECT value FROM ledger_meta WHERE key = 'schema_version'"
    )
    with open_ledger(ledger_url) as first:
        make_run(first, events=3)
    with open_ledger(ledger_url) as again:
        assert 3 == len(again.events("run-1"))
        assert again.verify().ok


def test_newer_schema_is_refused(ledger_url: str, raw: RawSql) -> None:
    raw.execute("UPDATE ledger_meta SET value = '99'")
    before = len(ledger_threads())
    with pytest.raises(LedgerError, match="schema version 99 is newer than this storeops"):
        PostgresLedger(ledger_url)
    assert before == len(ledger_threads())  # the failed open stopped its loop thread


def test_ledgers_opening_a_new_schema_at_once_create_it_once(ledger_url: str) -> None:
    # Without the advisory lock, concurrent CREATE … IF NOT EXISTS statements collide
    # on PostgreSQL's catalog ("duplicate key value violates unique constraint").
    opened: list[Ledger] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6, timeout=30)

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(PostgresLedger(ledger_url, pool_size=1))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=open_one) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    try:
        assert [] == errors
        make_run(opened[0], events=2)
        assert 2 == len(opened[-1].events("run-1"))
    finally:
        for one in opened:
            one.close()


# --- tampering ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statements", "seq", "expected"),
    [
        pytest.param(
            ["DELETE FROM ledger_events WHERE run_id = 'run-1' AND seq = 4"],
            4,
            "event 4 missing — a row was deleted",
            id="deleted-middle",
        ),
        pytest.param(
            ["DELETE FROM ledger_events WHERE run_id = 'run-1' AND seq = 8"],
            8,
            "run head says 8 events, chain ends at 7 — the last event was deleted",
            id="deleted-last",
        ),
        pytest.param(
            ["DELETE FROM ledger_events WHERE run_id = 'run-1'"],
            1,
            "run head says 8 events, chain ends at 0 — the last events were deleted",
            id="truncated",
        ),
        pytest.param(
            ["UPDATE ledger_events SET type = 'task.skipped' WHERE run_id = 'run-1' AND seq = 3"],
            3,
            "event 3 (task.skipped): column type is 'task.skipped' but the hashed body says "
            "'task.completed' — the row was edited",
            id="column-type",
        ),
        pytest.param(
            [
                "UPDATE ledger_events SET at = '2030-01-01T00:00:00.000000Z'"
                " WHERE run_id = 'run-1' AND seq = 3"
            ],
            3,
            "event 3 (task.completed): column at is '2030-01-01T00:00:00.000000Z' but the "
            "hashed body says '2026-11-22T12:00:03.000000Z' — the row was edited",
            id="column-at",
        ),
        pytest.param(
            [
                f"UPDATE ledger_events SET prev_hash = '{'f' * 64}'"
                " WHERE run_id = 'run-1' AND seq = 3"
            ],
            3,
            f"event 3 (task.completed): column prev_hash is '{'f' * 64}' but the hashed body",
            id="column-prev-hash",
        ),
        pytest.param(
            [
                "UPDATE ledger_events SET seq = -1 WHERE run_id = 'run-1' AND seq = 3",
                "UPDATE ledger_events SET seq = 3 WHERE run_id = 'run-1' AND seq = 5",
                "UPDATE ledger_events SET seq = 5 WHERE run_id = 'run-1' AND seq = -1",
            ],
            3,
            "event 3 (task.completed): its hashed body says it is event 5 — rows were "
            "reordered or renumbered",
            id="swapped",
        ),
        pytest.param(
            ["DELETE FROM ledger_runs WHERE run_id = 'run-1'"],
            None,
            "events exist but the run row is missing — the run row was deleted",
            id="deleted-run-row",
        ),
    ],
)
def test_tampering_with_sql_is_detected(
    ledger: Ledger, raw: RawSql, statements: list[str], seq: int | None, expected: str
) -> None:
    make_run(ledger)
    make_run(ledger, "run-2")  # untouched, must stay quiet
    for statement in statements:
        raw.execute(statement)
    report = ledger.verify()
    found_seq, message = only_problem(report)
    assert (seq, "run-1") == (found_seq, report.problems[0].run_id)
    assert message.startswith(expected), message
    assert ledger.verify("run-2").ok


def test_edited_body_is_detected(ledger: Ledger, raw: RawSql) -> None:
    make_run(ledger)
    body = raw.fetchval("SELECT body FROM ledger_events WHERE run_id = 'run-1' AND seq = 5")
    forged = body.replace(b'"actor":"alice"', b'"actor":"mallory"')
    assert forged != body
    raw.execute("UPDATE ledger_events SET body = $1 WHERE run_id = 'run-1' AND seq = 5", forged)
    assert (
        5,
        "event 5 (task.completed): hash does not match its content — the row was edited",
    ) == (only_problem(ledger.verify()))


def test_edited_body_with_recomputed_hash_breaks_the_next_link(ledger: Ledger, raw: RawSql) -> None:
    make_run(ledger)
    e = ledger.events("run-1")[4]
    data = {**e.data, "actor": "mallory"}
    body = event_body(e.run_id, e.seq, e.type, e.at, canonical_json(data), e.prev_hash)
    raw.execute(
        "UPDATE ledger_events SET body = $1, hash = $2 WHERE run_id = 'run-1' AND seq = 5",
        body,
        sha256_hex(body),
    )
    seq, message = only_problem(ledger.verify())
    assert 6 == seq
    assert "links to a different previous hash" in message
    assert "event 5 was rewritten" in message


def test_a_rewound_head_needs_an_outside_anchor(ledger: Ledger, raw: RawSql) -> None:
    make_run(ledger)
    seventh = ledger.events("run-1")[6]
    raw.execute("DELETE FROM ledger_events WHERE run_id = 'run-1' AND seq = 8")
    raw.execute("UPDATE ledger_runs SET head_seq = 7, head_hash = $1", seventh.hash)
    assert ledger.verify().ok  # documented limit, as on SQLite


def test_appends_chain_on_the_stored_head_not_a_remembered_one(ledger: Ledger, raw: RawSql) -> None:
    # Event 8 replaced by a well-formed forgery behind the ledger's back: same seq,
    # other hash. The next append must link to what is stored (so `verify` judges the
    # stored chain), not to the head this instance saw when it wrote event 8.
    make_run(ledger)
    seventh = ledger.events("run-1")[6]
    body = event_body("run-1", 8, "task.completed", at(8), b'{"task":"refund"}', seventh.hash)
    raw.execute("DELETE FROM ledger_events WHERE run_id = 'run-1' AND seq = 8")
    forged = _forge(raw, 8, body, seventh.hash, at_=at(8))
    raw.execute("UPDATE ledger_runs SET head_hash = $1", forged)
    [ninth] = ledger.append("run-1", [completed("after", 9)], expected_seq=8)
    assert (9, forged) == (ninth.seq, ninth.prev_hash)
    assert ledger.verify().ok  # a consistent forgery needs an outside anchor, as above


def _forge(raw: RawSql, seq: int, body: bytes, prev: str, *, at_: str) -> str:
    digest = sha256_hex(body)
    raw.execute(
        "INSERT INTO ledger_events VALUES ('run-1', $1, 'task.completed', $2, $3, $4, $5)",
        seq,
        at_,
        body,
        prev,
        digest,
    )
    return digest


def test_forged_row_with_wrong_prev_is_detected(ledger: Ledger, raw: RawSql) -> None:
    make_run(ledger)
    data = canonical_json({"task": "refund", "actor": "mallory"})
    body = event_body("run-1", 9, "task.completed", at(9), data, GENESIS)
    digest = _forge(raw, 9, body, GENESIS, at_=at(9))
    raw.execute("UPDATE ledger_runs SET head_seq = 9, head_hash = $1", digest)
    seq, message = only_problem(ledger.verify())
    assert 9 == seq
    assert message.startswith("event 9 (task.completed) links to a different previous hash")


def test_forged_row_appended_without_moving_the_head_is_detected(
    ledger: Ledger, raw: RawSql
) -> None:
    make_run(ledger)
    last = ledger.events("run-1")[-1]
    _forge(
        raw,
        9,
        event_body("run-1", 9, "task.completed", at(9), b"{}", last.hash),
        last.hash,
        at_=at(9),
    )
    seq, message = only_problem(ledger.verify())
    assert 9 == seq
    assert "run head says 8 events, chain continues to 9" in message


def test_forged_row_inserted_in_the_middle_is_detected(ledger: Ledger, raw: RawSql) -> None:
    make_run(ledger)
    third = ledger.events("run-1")[2]
    body = event_body("run-1", 4, "task.completed", at(3), b'{"task":"refund"}', third.hash)
    for n in range(8, 3, -1):  # make room: renumber 4..8 to 5..9
        raw.execute("UPDATE ledger_events SET seq = seq + 1 WHERE run_id = 'run-1' AND seq = $1", n)
    _forge(raw, 4, body, third.hash, at_=at(3))
    seq, message = only_problem(ledger.verify())
    assert 5 == seq
    assert "its hashed body says it is event 4 — rows were reordered or renumbered" in message


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ("version = 2", "run row says version 2 but event 1 records 1"),
        ("sop_id = 'returns'", "run row says sop_id 'returns' but event 1 records 'pick_pack'"),
        ("business_key = 'SO-9'", "run row says business_key 'SO-9' but event 1 records 'SO-1'"),
    ],
)
def test_edited_run_row_is_detected_when_event_1_records_it(
    ledger: Ledger, raw: RawSql, update: str, expected: str
) -> None:
    ledger.create_run(
        record("run-1", key="SO-1"), started("run-1", sop="pick_pack", version=1, key="SO-1")
    )
    assert ledger.verify().ok
    raw.execute(f"UPDATE ledger_runs SET {update}")
    seq, message = only_problem(ledger.verify())
    assert seq is None
    assert expected in message


def test_edited_definition_is_detected(ledger: Ledger, raw: RawSql) -> None:
    bundle = b"id: pick_pack\nversion: 1\n"
    ledger.put_definition(sha256_hex(bundle), "pick_pack", 1, bundle)
    assert ledger.verify().ok
    raw.execute("UPDATE ledger_definitions SET bundle = $1", bundle.replace(b"1", b"2"))
    report = ledger.verify()
    _, message = only_problem(report)
    assert sha256_hex(bundle) == report.problems[0].def_hash
    assert "(pick_pack v1): stored bytes no longer hash to their key" in message
    with pytest.raises(LedgerCorruptError, match="the definition was edited"):
        ledger.get_definition(sha256_hex(bundle))


def test_unreadable_body_is_reported_on_read(ledger: Ledger, raw: RawSql) -> None:
    make_run(ledger)
    raw.execute(
        "UPDATE ledger_events SET body = '\\x00ff'::bytea WHERE run_id = 'run-1' AND seq = 2"
    )
    with pytest.raises(LedgerCorruptError, match=r"run run-1: event 2 .* unreadable body"):
        ledger.events("run-1")


def test_verify_reads_past_its_first_chunk_in_one_snapshot(ledger: Ledger, raw: RawSql) -> None:
    ledger.create_run(record("big"), started("big"))
    for base in range(0, 12_000, 1_000):
        ledger.append("big", [completed(f"t{base + i}", 1) for i in range(1_000)])
    # Appends go on while verify reads: its runs and events must come from one snapshot,
    # or the run's head and its chain disagree.
    stop = threading.Event()
    appended: list[int] = []

    def keep_appending() -> None:
        while not stop.is_set():
            appended.append(ledger.append("big", [completed("late", 2)])[0].seq)

    writer = threading.Thread(target=keep_appending)
    writer.start()
    try:
        reports = [ledger.verify() for _ in range(3)]
    finally:
        stop.set()
        writer.join()
    assert appended, "the writer never got a turn"
    assert [[]] * 3 == [r.problems for r in reports]
    assert all(r.events_checked >= 12_001 for r in reports)
    # A problem deep in the stream (well past the first chunk of rows) is found.
    raw.execute("UPDATE ledger_events SET type = 'x' WHERE run_id = 'big' AND seq = 11000")
    assert 11000 == only_problem(ledger.verify())[0]


# --- atomicity and concurrency --------------------------------------------------------


def test_batch_failing_inside_the_transaction_writes_nothing(ledger: Ledger, raw: RawSql) -> None:
    make_run(ledger, events=2)
    raw.execute(  # the database itself refuses the third insert
        """
        CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.type = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER boom BEFORE INSERT ON ledger_events
            FOR EACH ROW EXECUTE FUNCTION boom();
        """
    )
    batch = [completed("a", 3), completed("b", 4), NewEvent("boom", at(5), {})]
    with pytest.raises(LedgerError, match=r"run run-1: appending 3 events failed.*boom refused"):
        ledger.append("run-1", batch)
    assert 2 == len(ledger.events("run-1"))
    assert 2 == ledger.get_run("run-1").head_seq
    assert [3] == [e.seq for e in ledger.append("run-1", [completed("a", 3)])]
    assert ledger.verify().ok


def test_threads_creating_the_same_run_have_one_winner(ledger: Ledger) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(6, timeout=30)

    def create(n: int) -> None:
        barrier.wait()
        try:
            ledger.create_run(record("run-1", n=n), started("run-1", n))
            outcomes.append("won")
        except RunExistsError:
            outcomes.append("exists")

    workers = [threading.Thread(target=create, args=(n,)) for n in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert ["exists"] * 5 + ["won"] == sorted(outcomes)
    assert 1 == len(ledger.events("run-1"))
    assert ledger.verify().ok


def test_a_statement_that_waits_too_long_is_stopped_and_writes_nothing(
    ledger_url: str, raw: RawSql
) -> None:
    with PostgresLedger(ledger_url, timeout=0.5) as ledger:
        make_run(ledger, events=2)
        raw.execute("BEGIN")
        raw.execute("SELECT 1 FROM ledger_runs WHERE run_id = 'run-1' FOR UPDATE")
        started_at = time.monotonic()
        with pytest.raises(LedgerError) as info:
            ledger.append("run-1", [completed("late", 3)])
        assert time.monotonic() - started_at < 5
        assert "run run-1: appending 1 events failed" in str(info.value)
        assert "stopped the statement after the 0.5 s timeout" in str(info.value)
        assert "nothing was written" in str(info.value)
        raw.execute("ROLLBACK")
        assert [3] == [e.seq for e in ledger.append("run-1", [completed("ok", 3)])]
        assert ["ok"] == [e.data["task"] for e in ledger.events("run-1", after_seq=2)]
        assert ledger.verify().ok


# --- async callers ------------------------------------------------------------------


def test_usable_from_inside_a_running_event_loop(ledger_url: str) -> None:
    async def flow() -> tuple[list[int], int]:
        # Opened, used and closed from async code, as the Prefect flows will; the
        # caller's loop keeps running other tasks around and between the calls.
        with open_ledger(ledger_url) as ledger:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            tick_task = asyncio.create_task(ticker())
            ledger.create_run(record("run-1"), started("run-1"))
            await asyncio.sleep(0)
            seqs = [
                stored[0].seq
                for stored in await asyncio.gather(
                    *(
                        asyncio.to_thread(ledger.append, "run-1", [completed("t", i)])
                        for i in range(2, 6)
                    )
                )
            ]
            seqs.append(ledger.append("run-1", [completed("last", 6)], expected_seq=5)[0].seq)
            tick_task.cancel()
            assert ledger.verify().ok
            return seqs, ticks

    seqs, ticks = asyncio.run(flow())
    assert [2, 3, 4, 5, 6] == sorted(seqs)
    assert ticks > 0


# --- dispatch -----------------------------------------------------------------------


def test_open_ledger_dispatch(pg_database: str, raw: RawSql) -> None:
    host_and_db = pg_database.split("://", 1)[1]
    for n, scheme in enumerate(("postgresql", "postgres", "postgresql+asyncpg")):
        schema = f"d_{uuid.uuid4().hex[:12]}"
        with open_ledger(f"{scheme}://{host_and_db}?schema={schema}") as opened:
            assert isinstance(opened, PostgresLedger)
            assert schema == opened.schema
            make_run(opened, f"run-{n}", events=1)
        assert 1 == raw.fetchval(f'SELECT count(*) FROM "{schema}".ledger_events')

    # A password never reaches a message (trust auth accepts any password here).
    user, _, rest = host_and_db.partition("@")
    with open_ledger(f"postgresql://{user}:s3cret@{rest}?schema=t_pw") as opened:
        assert "s3cret" not in repr(opened)
    with pytest.raises(LedgerError, match="unreachable") as info:
        open_ledger("postgresql://storeops:s3cret@127.0.0.1:1/ledger")
    assert "s3cret" not in str(info.value)
    with pytest.raises(LedgerError, match="schema 'Robert; DROP' is not allowed"):
        open_ledger(f"{pg_database}?schema=Robert; DROP")


def test_close_stops_the_loop_thread(ledger_url: str) -> None:
    before = len(ledger_threads())
    ledger = PostgresLedger(ledger_url)
    assert before + 1 == len(ledger_threads())
    ledger.close()
    ledger.close()
    assert before == len(ledger_threads())
    with pytest.raises(LedgerError, match=r"ledger postgresql://.* is closed"):
        ledger.get_run("run-1")
