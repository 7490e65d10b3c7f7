"""Tests of the audit ledger on real SQLite files: chain links, tamper detection,
optimistic concurrency across threads and processes, atomicity, definitions, dispatch.

`LedgerContract` holds the tests every backend must pass through the public API;
test_ledger_postgres.py runs it on PostgreSQL. Tamper tests need raw access to the
storage, so each backend has its own."""

from __future__ import annotations

import itertools
import json
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import storeops.ledger
from storeops.ledger import (
    GENESIS,
    ConcurrentAppendError,
    DefinitionNotFoundError,
    Ledger,
    LedgerCorruptError,
    LedgerError,
    NewEvent,
    RunExistsError,
    RunNotFoundError,
    RunRecord,
    SqliteLedger,
    VerifyReport,
    canonical_json,
    format_timestamp,
    open_ledger,
    sha256_hex,
)
from storeops.ledger.base import event_body
from storeops.ledger.sqlite import SCHEMA_VERSION
from tests.conftest import ROOT

REPO = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("ledger_writer.py")
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DEF_HASH = "d" * 64


def at(n: int) -> str:
    return format_timestamp(T0 + timedelta(seconds=n))


def record(
    run_id: str, *, sop_id: str = "pick_pack", key: str | None = None, n: int = 0
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        sop_id=sop_id,
        version=1,
        def_hash=DEF_HASH,
        business_key=key,
        status="running",
        started_at=at(n),
        updated_at=at(n),
        head_seq=0,
        head_hash="",
    )


def started(run_id: str, n: int = 0, **data: Any) -> NewEvent:
    return NewEvent("run.started", at(n), {"run": run_id, **data})


def completed(task: str, n: int, actor: str = "alice") -> NewEvent:
    return NewEvent("task.completed", at(n), {"task": task, "actor": actor})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger" / "audit.db"


@pytest.fixture
def ledger(db: Path) -> Iterator[SqliteLedger]:
    with SqliteLedger(db) as opened:
        yield opened


@pytest.fixture
def ledger_url(db: Path) -> str:
    """What `open_ledger` opens as the `ledger` fixture's file."""
    return str(db)


def make_run(ledger: Ledger, run_id: str = "run-1", events: int = 8) -> None:
    """A run with `events` events: run.started then task.completed ones."""
    ledger.create_run(record(run_id), started(run_id))
    ledger.append(run_id, [completed(f"t{i}", i) for i in range(2, events + 1)])


@contextmanager
def raw(db: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection for tampering, as an attacker with file access would have
    (foreign keys off, autocommit)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def raw_value(db: Path, sql: str) -> Any:
    with raw(db) as conn:
        return conn.execute(sql).fetchone()[0]


def only_problem(report: VerifyReport) -> tuple[int | None, str]:
    assert not report.ok
    assert len(report.problems) == 1, report.problems
    return report.problems[0].seq, report.problems[0].message


def _start_writer(url: str, name: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), url, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert {"ready": name} == _answer(proc)
    return proc


def _ask(proc: subprocess.Popen[str], command: dict[str, object]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(command) + "\n")
    proc.stdin.flush()


def _answer(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"writer exited with {proc.wait(5)}"
    answer: dict[str, Any] = json.loads(line)
    return answer


# --- canonical bytes ----------------------------------------------------------------


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": [1, 2.5, None], "a": {"z": "ü", "y": True}}) == (
        '{"a":{"y":true,"z":"ü"},"b":[1,2.5,null]}'.encode()
    )
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert GENESIS == "0" * 64


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"when": datetime(2026, 1, 1)}, "value['when'] is a datetime"),
        ({1: "x"}, "key 1 of type int"),
        ({"a": [1, (2, 3)]}, "value['a'][1] is a tuple"),
        ({"x": math.nan}, "cannot be written as canonical JSON"),
        ({"x": {1, 2}}, "value['x'] is a set"),
    ],
    ids=["datetime", "int-key", "tuple", "nan", "set"],
)
def test_canonical_json_refuses_non_json(value: object, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        canonical_json(value)
    assert expected in str(info.value)


def test_canonical_json_refuses_cycles() -> None:
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError, match="Circular reference"):
        canonical_json(cyclic)


def test_format_timestamp() -> None:
    local = datetime(2026, 11, 22, 13, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(local) == "2026-11-22T12:00:00.000005Z"
    with pytest.raises(ValueError, match="no time zone"):
        format_timestamp(datetime(2026, 1, 1))


# --- the contract every backend passes --------------------------------------------


class LedgerContract:
    """Tests of the `Ledger` contract through its public API only. A backend's test
    module subclasses this as `Test<Backend>Ledger` and provides two fixtures: `ledger`,
    an open empty ledger, and `ledger_url`, which `open_ledger` opens on the same store
    (for second instances in threads, processes and after `close`)."""

    def test_chain_round_trip(self, ledger: Ledger) -> None:
        first = ledger.create_run(record("run-1"), started("run-1"))
        appended = ledger.append("run-1", [completed("pick", 1), completed("pack", 2)])
        appended += ledger.append("run-1", [completed("ship", 3, actor="bob")])

        stored = ledger.events("run-1")
        assert [first, *appended] == stored
        assert [e.seq for e in stored] == [1, 2, 3, 4]
        assert [e.data["task"] for e in stored[1:]] == ["pick", "pack", "ship"]
        assert stored[0].prev_hash == GENESIS
        for before, after in itertools.pairwise(stored):
            assert before.hash == after.prev_hash
        for e in stored:
            body = event_body(e.run_id, e.seq, e.type, e.at, canonical_json(e.data), e.prev_hash)
            assert sha256_hex(body) == e.hash
        assert stored[2:] == ledger.events("run-1", after_seq=2)

        run = ledger.get_run("run-1")
        assert (4, stored[-1].hash, at(3)) == (run.head_seq, run.head_hash, run.updated_at)
        report = ledger.verify()
        assert (report.ok, report.runs_checked, report.events_checked) == (True, 1, 4)

    def test_wake_times_schedule_open_runs_only(self, ledger: Ledger) -> None:
        for name in ("run-1", "run-2", "run-3"):
            ledger.create_run(record(name), started(name))
        assert ledger.next_wake() is None
        ledger.set_wake("run-1", at(30))
        ledger.set_wake("run-2", at(10))
        ledger.set_wake("run-3", at(20))
        ledger.set_wake("run-3", at(50))  # a later decision replaces the earlier one
        assert at(10) == ledger.next_wake()
        assert ["run-2"] == ledger.due_runs(at(15))
        assert ["run-2", "run-1"] == ledger.due_runs(at(40))
        assert ["run-2"] == ledger.due_runs(at(40), limit=1)
        ledger.append("run-2", [NewEvent("run.finished", at(41), {"status": "succeeded"})])
        assert ["run-1", "run-3"] == ledger.due_runs(at(60))  # finished runs never wake
        ledger.set_wake("run-1", None)
        assert at(50) == ledger.next_wake()
        with pytest.raises(RunNotFoundError):
            ledger.set_wake("no-such-run", at(1))
        with pytest.raises(ValueError):
            ledger.set_wake("run-3", "tomorrow")
        assert ledger.verify().ok  # wake times are outside the hash chain

    def test_returned_data_does_not_alias_the_callers_dict(self, ledger: Ledger) -> None:
        data: dict[str, Any] = {"items": [1]}
        stored = ledger.create_run(record("run-1"), NewEvent("run.started", at(0), data))
        data["items"].append(2)
        assert stored.data == {"items": [1]}
        assert ledger.events("run-1")[0].data == {"items": [1]}

    def test_create_run_refuses_an_existing_id(self, ledger: Ledger) -> None:
        ledger.create_run(record("run-1"), started("run-1"))
        with pytest.raises(RunExistsError, match="run-1 already exists"):
            ledger.create_run(record("run-1", sop_id="other"), started("run-1"))
        assert ledger.get_run("run-1").sop_id == "pick_pack"
        assert len(ledger.events("run-1")) == 1

    def test_create_run_sets_the_head_from_the_stored_event(self, ledger: Ledger) -> None:
        given = RunRecord("run-1", "s", 1, DEF_HASH, None, "running", at(0), at(0), 42, "junk")
        first = ledger.create_run(given, started("run-1"))
        run = ledger.get_run("run-1")
        assert (1, first.hash) == (run.head_seq, run.head_hash)

    def test_unknown_run(self, ledger: Ledger) -> None:
        with pytest.raises(RunNotFoundError, match="run nope is not in the ledger"):
            ledger.append("nope", [completed("x", 1)])
        with pytest.raises(RunNotFoundError):
            ledger.events("nope")
        with pytest.raises(RunNotFoundError):
            ledger.get_run("nope")
        with pytest.raises(RunNotFoundError):
            ledger.verify("nope")

    @pytest.mark.parametrize(
        "bad_at",
        ["2026-11-22T12:00:00Z", "2026-11-22T12:00:00.123456+00:00", "yesterday"],
    )
    def test_timestamps_must_have_the_fixed_utc_form(self, ledger: Ledger, bad_at: str) -> None:
        ledger.create_run(record("run-1"), started("run-1"))
        with pytest.raises(ValueError, match="expected a UTC timestamp like"):
            ledger.append("run-1", [NewEvent("task.completed", bad_at, {})])
        assert ledger.get_run("run-1").head_seq == 1

    def test_stale_expected_seq_writes_nothing(self, ledger: Ledger) -> None:
        make_run(ledger, events=3)
        before = ledger.get_run("run-1")
        ledger.append("run-1", [completed("ok", 4)], expected_seq=3)
        with pytest.raises(ConcurrentAppendError) as info:
            ledger.append("run-1", [completed("late", 5), completed("later", 6)], expected_seq=3)
        assert (info.value.expected, info.value.actual) == (3, 4)
        assert "run run-1" in str(info.value)
        assert "another writer appended first" in str(info.value)
        assert [e.data["task"] for e in ledger.events("run-1", after_seq=3)] == ["ok"]
        assert ledger.get_run("run-1").head_seq == 4
        assert before.head_hash != ledger.get_run("run-1").head_hash
        assert ledger.verify().ok

    def test_two_processes_completing_the_same_step_have_one_winner(
        self, ledger: Ledger, ledger_url: str
    ) -> None:
        ledger.create_run(record("run-1"), started("run-1"))
        writers = {name: _start_writer(ledger_url, name) for name in ("a", "b")}
        rounds = 20
        winners = Counter[str]()
        try:
            for r in range(rounds):
                for proc in writers.values():
                    _ask(proc, {"op": "read", "run": "run-1"})
                heads = {name: _answer(proc)["head"] for name, proc in writers.items()}
                assert {1 + r} == set(heads.values())  # both read the same head
                start = time.time() + 0.01
                for proc in writers.values():
                    _ask(proc, {"op": "append", "run": "run-1", "start": start, "round": r})
                answers = {name: _answer(proc) for name, proc in writers.items()}
                outcome = sorted(a["result"] for a in answers.values())
                assert outcome == ["conflict", "won"], answers
                winner = next(n for n, a in answers.items() if a["result"] == "won")
                loser = next(a for a in answers.values() if a["result"] == "conflict")
                assert 2 + r == answers[winner]["seq"]
                assert (1 + r, 2 + r) == (loser["expected"], loser["actual"])
                assert (winner, r) == (loser["saw_by"], loser["saw_round"])
                winners[winner] += 1
        finally:
            for proc in writers.values():
                assert proc.stdin is not None
                proc.stdin.close()
            for proc in writers.values():
                assert proc.wait(10) == 0
                assert proc.stdout is not None
                proc.stdout.close()
        events = ledger.events("run-1")
        assert 1 + rounds == len(events)
        assert list(range(rounds)) == [e.data["round"] for e in events[1:]]
        assert rounds == sum(winners.values())
        assert ledger.verify().ok

    def test_threads_lose_nothing(self, ledger_url: str) -> None:
        shared = open_ledger(ledger_url)
        shared.create_run(record("shared"), started("shared"))
        threads, per_thread = 8, 200
        for t in range(threads):
            shared.create_run(record(f"own-{t}", n=t), started(f"own-{t}"))
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads, timeout=30)

        def work(t: int) -> None:
            # Half the threads share one ledger object (its lock or pool), half bring
            # their own (the database's locking), all without expected_seq.
            ledger = shared if t % 2 else open_ledger(ledger_url)
            try:
                barrier.wait()
                for i in range(per_thread):
                    run = "shared" if i % 2 else f"own-{t}"
                    ledger.append(run, [NewEvent("task.completed", at(i), {"t": t, "i": i})])
            except BaseException as exc:
                errors.append(exc)
            finally:
                if ledger is not shared:
                    ledger.close()

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        shared_events = shared.events("shared")
        assert 1 + threads * per_thread // 2 == len(shared_events)
        assert dict.fromkeys(range(threads), per_thread // 2) == dict(
            Counter(e.data["t"] for e in shared_events[1:])
        )
        for t in range(threads):
            own = shared.events(f"own-{t}")
            assert [0, *range(0, per_thread, 2)] == [e.data.get("i", 0) for e in own]
        report = shared.verify()
        assert report.ok, report.problems
        assert 1 + threads == report.runs_checked
        assert 1 + threads + threads * per_thread == report.events_checked
        shared.close()

    def test_batch_with_non_json_data_writes_nothing(self, ledger: Ledger) -> None:
        make_run(ledger, events=2)
        batch = [
            completed("a", 3),
            NewEvent("task.completed", at(4), {"when": datetime(2026, 1, 1)}),
            completed("c", 5),
        ]
        with pytest.raises(ValueError) as info:
            ledger.append("run-1", batch)
        assert "run run-1: event 2 of 3 ('task.completed'): data['when'] is a datetime" in str(
            info.value
        )
        assert len(ledger.events("run-1")) == 2
        assert ledger.get_run("run-1").head_seq == 2

    def test_run_finished_needs_a_status(self, ledger: Ledger) -> None:
        make_run(ledger, events=1)
        with pytest.raises(ValueError, match=r'needs data\["status"\]'):
            ledger.append("run-1", [completed("a", 2), NewEvent("run.finished", at(3), {})])
        assert ledger.get_run("run-1").head_seq == 1

    def test_closed_ledger_refuses_work(self, ledger_url: str) -> None:
        ledger = open_ledger(ledger_url)
        make_run(ledger, events=1)
        ledger.close()
        ledger.close()
        with pytest.raises(LedgerError, match="is closed"):
            ledger.append("run-1", [completed("a", 2)])
        with pytest.raises(LedgerError, match="is closed"):
            ledger.verify()

    def test_definitions(self, ledger: Ledger) -> None:
        bundle = b"id: pick_pack\n"
        key = sha256_hex(bundle)
        ledger.put_definition(key, "pick_pack", 1, bundle)
        ledger.put_definition(key, "pick_pack", 1, bundle)  # idempotent
        assert bundle == ledger.get_definition(key)
        with pytest.raises(ValueError, match=f"hashes to {key}, not to the given key"):
            ledger.put_definition("0" * 64, "pick_pack", 1, bundle)
        with pytest.raises(ValueError, match="already stored as pick_pack v1, not other v1"):
            ledger.put_definition(key, "other", 1, bundle)
        with pytest.raises(DefinitionNotFoundError, match="no definition is stored under hash ff"):
            ledger.get_definition("ff" * 32)
        report = ledger.verify()
        assert (report.ok, report.definitions_checked) == (True, 1)

    def test_runs_find_run_and_finished_status(self, ledger: Ledger) -> None:
        ledger.create_run(record("r-b", key="SO-1", n=2), started("r-b"))
        ledger.create_run(record("r-a", key="SO-1", n=2), started("r-a"))
        ledger.create_run(record("r-c", sop_id="returns", key="SO-1", n=1), started("r-c"))
        ledger.create_run(record("r-d", key="SO-2", n=3), started("r-d"))

        assert [r.run_id for r in ledger.runs()] == ["r-c", "r-a", "r-b", "r-d"]
        assert [r.run_id for r in ledger.runs(limit=2)] == ["r-c", "r-a"]
        assert [r.run_id for r in ledger.runs(sop_id="pick_pack")] == ["r-a", "r-b", "r-d"]

        found = ledger.find_run("pick_pack", "SO-1")
        assert found is not None
        assert found.run_id == "r-b"  # latest start, then highest id
        assert ledger.find_run("pick_pack", "SO-9") is None

        ledger.append(
            "r-b", [completed("x", 5), NewEvent("run.finished", at(6), {"status": "done"})]
        )
        run = ledger.get_run("r-b")
        assert ("done", 3, at(6)) == (run.status, run.head_seq, run.updated_at)
        assert [r.run_id for r in ledger.runs(status="done")] == ["r-b"]
        assert [r.run_id for r in ledger.runs(status="running")] == ["r-c", "r-a", "r-d"]
        found = ledger.find_run("pick_pack", "SO-1")
        assert found is not None
        assert found.run_id == "r-a"
        closed = ledger.find_run("pick_pack", "SO-1", open_only=False)
        assert closed is not None
        assert closed.run_id == "r-b"

        ledger.append("r-a", [NewEvent("run.finished", at(7), {"status": "failed"})])
        assert ledger.find_run("pick_pack", "SO-1") is None
        assert ledger.get_run("r-a").status == "failed"


class TestSqliteLedger(LedgerContract):
    """The contract on a SQLite file."""


# --- SQLite storage -----------------------------------------------------------------


def test_stored_body_is_canonical_json_of_the_spec_dict(ledger: SqliteLedger, db: Path) -> None:
    data = {"actor": "zoë", "lines": [{"sku": "A-1", "qty": 2}], "note": 'quote " and \\'}
    ledger.create_run(record("run-1"), NewEvent("run.started", at(0), data))
    with raw(db) as conn:
        body, stored_hash = conn.execute("SELECT body, hash FROM events").fetchone()
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


def test_reopening_keeps_everything(db: Path) -> None:
    with open_ledger(db) as first:
        make_run(first, events=3)
    with open_ledger(db) as again:
        assert len(again.events("run-1")) == 3
        assert again.verify().ok
    assert raw_value(db, "PRAGMA user_version") == SCHEMA_VERSION
    assert raw_value(db, "PRAGMA journal_mode") == "wal"


def test_a_version_1_ledger_is_brought_up_to_date(db: Path) -> None:
    with open_ledger(db) as first:
        make_run(first, events=3)
    with raw(db) as conn:  # what a version 1 file looked like: no wakes table
        conn.execute("DROP TABLE wakes")
        conn.execute("PRAGMA user_version = 1")
    with open_ledger(db) as again:
        assert len(again.events("run-1")) == 3
        again.set_wake("run-1", at(5))
        assert ["run-1"] == again.due_runs(at(6))
    assert raw_value(db, "PRAGMA user_version") == SCHEMA_VERSION


def test_newer_schema_is_refused(db: Path) -> None:
    SqliteLedger(db).close()
    with raw(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(LedgerError, match="schema version 99 is newer"):
        SqliteLedger(db)


# --- tampering ----------------------------------------------------------------------


def test_edited_body_is_detected(ledger: SqliteLedger, db: Path) -> None:
    make_run(ledger)
    make_run(ledger, "run-2")  # untouched, must stay quiet
    with raw(db) as conn:
        body = conn.execute("SELECT body FROM events WHERE run_id='run-1' AND seq=5").fetchone()[0]
        forged = body.replace(b'"actor":"alice"', b'"actor":"mallory"')
        assert forged != body
        conn.execute("UPDATE events SET body=? WHERE run_id='run-1' AND seq=5", (forged,))
    seq, message = only_problem(ledger.verify())
    assert seq == 5
    assert (
        message
    ) == "event 5 (task.completed): hash does not match its content — the row was edited"
    assert ledger.verify().problems[0].run_id == "run-1"
    assert ledger.verify("run-2").ok


def test_edited_body_with_recomputed_hash_breaks_the_next_link(
    ledger: SqliteLedger, db: Path
) -> None:
    make_run(ledger)
    e = ledger.events("run-1")[4]
    data = {**e.data, "actor": "mallory"}
    body = event_body(e.run_id, e.seq, e.type, e.at, canonical_json(data), e.prev_hash)
    with raw(db) as conn:
        conn.execute(
            "UPDATE events SET body=?, hash=? WHERE run_id='run-1' AND seq=5",
            (body, sha256_hex(body)),
        )
    seq, message = only_problem(ledger.verify())
    assert seq == 6
    assert "links to a different previous hash" in message
    assert "event 5 was rewritten" in message


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("type", "task.skipped", "column type is 'task.skipped' but the hashed body says "),
        ("at", "2030-01-01T00:00:00.000000Z", "column at is '2030-01-01T00:00:00.000000Z'"),
        ("prev_hash", "f" * 64, "column prev_hash is"),
    ],
)
def test_edited_column_is_detected(
    ledger: SqliteLedger, db: Path, column: str, value: str, expected: str
) -> None:
    make_run(ledger)
    with raw(db) as conn:
        conn.execute(f"UPDATE events SET {column}=? WHERE run_id='run-1' AND seq=3", (value,))
    seq, message = only_problem(ledger.verify())
    assert seq == 3
    assert expected in message
    assert message.endswith("the row was edited")


def test_deleted_middle_row_is_detected(ledger: SqliteLedger, db: Path) -> None:
    make_run(ledger)
    with raw(db) as conn:
        conn.execute("DELETE FROM events WHERE run_id='run-1' AND seq=4")
    assert only_problem(ledger.verify()) == (4, "event 4 missing — a row was deleted")


def test_deleted_last_row_is_detected(ledger: SqliteLedger, db: Path) -> None:
    make_run(ledger)
    with raw(db) as conn:
        conn.execute("DELETE FROM events WHERE run_id='run-1' AND seq=8")
    assert only_problem(ledger.verify()) == (
        8,
        "run head says 8 events, chain ends at 7 — the last event was deleted",
    )


def test_truncated_run_is_detected(ledger: SqliteLedger, db: Path) -> None:
    make_run(ledger)
    with raw(db) as conn:
        conn.execute("DELETE FROM events WHERE run_id='run-1'")
    seq, message = only_problem(ledger.verify())
    assert seq == 1
    assert "chain ends at 0 — the last events were deleted" in message


def test_a_rewound_head_needs_an_outside_anchor(ledger: SqliteLedger, db: Path) -> None:
    # Documents the limit: an attacker who deletes the last event and also rewinds the
    # run head leaves a valid shorter chain. Only a head hash kept elsewhere catches it.
    make_run(ledger)
    seventh = ledger.events("run-1")[6]
    with raw(db) as conn:
        conn.execute("DELETE FROM events WHERE run_id='run-1' AND seq=8")
        conn.execute("UPDATE runs SET head_seq=7, head_hash=?", (seventh.hash,))
    assert ledger.verify().ok  # documented limit: keep head hashes elsewhere to catch this


def test_forged_row_with_wrong_prev_is_detected(ledger: SqliteLedger, db: Path) -> None:
    make_run(ledger)
    data = canonical_json({"task": "refund", "actor": "mallory"})
    body = event_body("run-1", 9, "task.completed", at(9), data, GENESIS)
    with raw(db) as conn:
        conn.execute(
            "INSERT INTO events VALUES ('run-1', 9, 'task.completed', ?, ?, ?, ?)",
            (at(9), body, GENESIS, sha256_hex(body)),
        )
        conn.execute("UPDATE runs SET head_seq=9, head_hash=?", (sha256_hex(body),))
    seq, message = only_problem(ledger.verify())
    assert seq == 9
    assert message.startswith("event 9 (task.completed) links to a different previous hash")


def test_forged_row_appended_without_moving_the_head_is_detected(
    ledger: SqliteLedger, db: Path
) -> None:
    make_run(ledger)
    last = ledger.events("run-1")[-1]
    body = event_body("run-1", 9, "task.completed", at(9), b"{}", last.hash)
    with raw(db) as conn:
        conn.execute(
            "INSERT INTO events VALUES ('run-1', 9, 'task.completed', ?, ?, ?, ?)",
            (at(9), body, last.hash, sha256_hex(body)),
        )
    seq, message = only_problem(ledger.verify())
    assert seq == 9
    assert "run head says 8 events, chain continues to 9" in message


def test_forged_row_inserted_in_the_middle_is_detected(ledger: SqliteLedger, db: Path) -> None:
    make_run(ledger)
    third = ledger.events("run-1")[2]
    body = event_body("run-1", 4, "task.completed", at(3), b'{"task":"refund"}', third.hash)
    with raw(db) as conn:
        for n in range(8, 3, -1):  # make room: renumber 4..8 to 5..9
            conn.execute("UPDATE events SET seq=seq+1 WHERE run_id='run-1' AND seq=?", (n,))
        conn.execute(
            "INSERT INTO events VALUES ('run-1', 4, 'task.completed', ?, ?, ?, ?)",
            (at(3), body, third.hash, sha256_hex(body)),
        )
    # The forged event 4 links correctly; the first row that cannot be genuine is next.
    seq, message = only_problem(ledger.verify())
    assert seq == 5
    assert "its hashed body says it is event 4 — rows were reordered or renumbered" in message


def test_swapped_rows_are_detected(ledger: SqliteLedger, db: Path) -> None:
    make_run(ledger)
    with raw(db) as conn:
        conn.execute("UPDATE events SET seq=-1 WHERE run_id='run-1' AND seq=3")
        conn.execute("UPDATE events SET seq=3 WHERE run_id='run-1' AND seq=5")
        conn.execute("UPDATE events SET seq=5 WHERE run_id='run-1' AND seq=-1")
    seq, message = only_problem(ledger.verify())
    assert seq == 3
    assert "its hashed body says it is event 5 — rows were reordered" in message


def test_deleted_run_row_is_detected(ledger: SqliteLedger, db: Path) -> None:
    make_run(ledger)
    with raw(db) as conn:  # a raw connection has foreign keys off
        conn.execute("DELETE FROM runs WHERE run_id='run-1'")
    seq, message = only_problem(ledger.verify())
    assert seq is None
    assert "events exist but the run row is missing" in message


@pytest.mark.parametrize(
    ("update", "expected"),
    [
        ("version=2", "run row says version 2 but event 1 records 1"),
        ("sop_id='returns'", "run row says sop_id 'returns' but event 1 records 'pick_pack'"),
        ("business_key='SO-9'", "run row says business_key 'SO-9' but event 1 records 'SO-1'"),
    ],
)
def test_edited_run_row_is_detected_when_event_1_records_it(
    ledger: SqliteLedger, db: Path, update: str, expected: str
) -> None:
    first = started("run-1", sop="pick_pack", version=1, key="SO-1")
    ledger.create_run(record("run-1", key="SO-1"), first)
    assert ledger.verify().ok
    with raw(db) as conn:
        conn.execute(f"UPDATE runs SET {update}")
    seq, message = only_problem(ledger.verify())
    assert seq is None
    assert expected in message


def test_edited_definition_is_detected(ledger: SqliteLedger, db: Path) -> None:
    bundle = b"id: pick_pack\nversion: 1\n"
    ledger.put_definition(sha256_hex(bundle), "pick_pack", 1, bundle)
    assert ledger.verify().ok
    with raw(db) as conn:
        conn.execute("UPDATE definitions SET bundle=?", (bundle.replace(b"1", b"2"),))
    report = ledger.verify()
    _, message = only_problem(report)
    assert sha256_hex(bundle) == report.problems[0].def_hash
    assert "(pick_pack v1): stored bytes no longer hash to their key" in message
    with pytest.raises(LedgerCorruptError, match="the definition was edited"):
        ledger.get_definition(sha256_hex(bundle))


def test_unreadable_body_is_reported_on_read(ledger: SqliteLedger, db: Path) -> None:
    make_run(ledger)
    with raw(db) as conn:
        conn.execute("UPDATE events SET body=x'00ff' WHERE run_id='run-1' AND seq=2")
    with pytest.raises(LedgerCorruptError, match=r"event 2 .* unreadable body"):
        ledger.events("run-1")


# --- atomicity ----------------------------------------------------------------------


def test_batch_failing_inside_the_transaction_writes_nothing(
    ledger: SqliteLedger, db: Path
) -> None:
    make_run(ledger, events=2)
    with raw(db) as conn:  # the database itself refuses the third insert
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.type = 'boom'"
            " BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
        )
    batch = [completed("a", 3), completed("b", 4), NewEvent("boom", at(5), {})]
    with pytest.raises(LedgerError, match=r"run run-1: appending 3 events failed.*boom refused"):
        ledger.append("run-1", batch)
    assert len(ledger.events("run-1")) == 2
    assert ledger.get_run("run-1").head_seq == 2
    assert [e.seq for e in ledger.append("run-1", [completed("a", 3)])] == [3]
    assert ledger.verify().ok


# --- dispatch -----------------------------------------------------------------------


def test_open_ledger_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    urls: list[tuple[str | os.PathLike[str], Path]] = [
        (tmp_path / "a.db", tmp_path / "a.db"),
        (str(tmp_path / "b" / "b.db"), tmp_path / "b" / "b.db"),
        ("sqlite:///rel/c.db", tmp_path / "rel" / "c.db"),
        (f"sqlite:///{tmp_path}/d.db", tmp_path / "d.db"),
    ]
    for url, file in urls:
        with open_ledger(url) as opened:
            assert isinstance(opened, SqliteLedger)
            make_run(opened, events=1)
        assert file.exists(), url

    with open_ledger(":memory:") as memory:
        make_run(memory, events=3)
        assert memory.verify().ok
        assert not (tmp_path / ":memory:").exists()

    # postgresql:// URLs: tests/ledger/test_ledger_postgres.py
    with pytest.raises(LedgerError, match="unknown scheme 'mysql'"):
        open_ledger("mysql://db/ledger")
    with pytest.raises(LedgerError, match="three slashes"):
        open_ledger("sqlite://c.db")


def test_public_api_is_curated() -> None:
    assert sorted(storeops.ledger.__all__) == [
        "ConcurrentAppendError",
        "DefinitionNotFoundError",
        "GENESIS",
        "Ledger",
        "LedgerCorruptError",
        "LedgerError",
        "NewEvent",
        "RUN_FINISHED",
        "RunExistsError",
        "RunNotFoundError",
        "RunRecord",
        "SqliteLedger",
        "StoredEvent",
        "VerifyProblem",
        "VerifyReport",
        "canonical_json",
        "format_timestamp",
        "open_ledger",
        "sha256_hex",
    ]
    for name in storeops.ledger.__all__:
        assert hasattr(storeops.ledger, name), name
    for error in ("RunExistsError", "RunNotFoundError", "ConcurrentAppendError"):
        assert issubclass(getattr(storeops.ledger, error), LedgerError)


def test_processes_opening_a_new_ledger_at_once_all_succeed(tmp_path: Path) -> None:
    """Switching a fresh file to WAL can fail with "locked" without SQLite waiting: the
    ledger retries its set-up, so processes racing to create one file all open it."""
    go = time.time() + 2.5  # every process has imported storeops well before its moment
    procs = []
    for round_ in range(6):
        path = tmp_path / f"race{round_}" / "ledger.db"
        script = (
            "import sys, time; from storeops.ledger import open_ledger; "
            f"time.sleep(max(0, {go + round_ * 0.2} - time.time())); "
            f"open_ledger({str(path)!r}).close()"
        )
        procs += [
            subprocess.Popen(
                [sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, cwd=ROOT
            )
            for _ in range(4)
        ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [0] * len(procs) == [p.returncode for p in procs], [e for e in errors if e]
