"""The PostgreSQL ledger against the SQLite ledger, measured in the same run.

Same work as `bench/ledger.py` (a fresh run per sample; single appends chained with
expected_seq, batched appends of 100, verify of everything stored), on two backends behind
one interface: SQLite (a local file, WAL, synchronous=FULL) and PostgreSQL at 127.0.0.1:5432
(trust auth, as on the development and CI machines; `STOREOPS_BENCH_POSTGRES_URL` overrides).
The benchmark makes its own database and drops it. PostgreSQL pays a loopback round trip
per statement that SQLite does not, and buys what SQLite cannot give: several machines
appending to one ledger (issue 3's scale-out). Target: ≥ 1,000 durable single appends/s.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path

from bench.common import Section, Target, interleaved, median, percentile
from bench.ledger import LedgerCase, single_appends

SERVER = os.environ.get("STOREOPS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")


async def _admin(statement: str) -> None:
    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information

    conn = await asyncpg.connect(f"{SERVER}/postgres", timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def run() -> Section:
    section = Section("ledger_pg", "PostgreSQL ledger vs SQLite ledger, same work, same run")
    name = f"storeops_bench_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server here: say so, measure nothing
        section.notes.append(f"skipped: no PostgreSQL at {SERVER.split('@')[-1]} ({exc})")
        return section
    try:
        with tempfile.TemporaryDirectory(prefix="storeops-bench-") as tmp:
            sqlite = LedgerCase(Path(tmp) / "ledger.db")
            postgres = LedgerCase(f"{SERVER}/{name}")
            try:
                _measure(section, sqlite, postgres)
            finally:
                sqlite.ledger.close()
                postgres.ledger.close()
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return section


def _measure(section: Section, sqlite: LedgerCase, postgres: LedgerCase) -> None:
    rates, single = single_appends({"sqlite": sqlite.single, "postgres": postgres.single})
    section.row("SQLite: durable single appends", rates["sqlite"], "appends/s")
    section.row("PostgreSQL: durable single appends", rates["postgres"], "appends/s")
    p99 = {n: median([percentile(s, 99) for s in single[n]]) * 1000 for n in single}
    section.row("SQLite: single append p99", [p99["sqlite"]], "ms")
    section.row("PostgreSQL: single append p99", [p99["postgres"]], "ms")
    batched = interleaved({"sqlite": sqlite.batched, "postgres": postgres.batched})
    section.row("SQLite: 100 events per append", batched["sqlite"], "events/s")
    section.row("PostgreSQL: 100 events per append", batched["postgres"], "events/s")
    verify = interleaved({"sqlite": sqlite.verify, "postgres": postgres.verify})
    section.row("SQLite: verify()", verify["sqlite"], "events/s")
    section.row("PostgreSQL: verify()", verify["postgres"], "events/s")
    pg_single = median(rates["postgres"])
    section.ratio("PostgreSQL / SQLite, single appends", pg_single, median(rates["sqlite"]))
    section.ratio(
        "PostgreSQL / SQLite, batched", median(batched["postgres"]), median(batched["sqlite"])
    )
    section.ratio(
        "PostgreSQL / SQLite, verify", median(verify["postgres"]), median(verify["sqlite"])
    )
    section.targets.append(
        Target("PostgreSQL durable single appends", pg_single, 1000.0, "appends/s")
    )
    section.notes.append(
        f"PostgreSQL at {SERVER.split('@')[-1]} over loopback TCP; each append is one "
        "transaction committed (synchronous_commit as the server has it, on by default)."
    )
