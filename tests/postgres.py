"""PostgreSQL for tests: the server address and a database made for one test session.

Needs PostgreSQL at 127.0.0.1:5432 with trust auth (as on the development and CI
machines). Without it the tests skip, or fail if STOREOPS_REQUIRE_POSTGRES=1 (CI sets it).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest

SERVER = os.environ.get("STOREOPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
START_HINT = (
    "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
)


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(f"{SERVER}/postgres", timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a database made for this test session, dropped at its end."""
    name = f"storeops_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = (
            f"the PostgreSQL ledger tests need PostgreSQL at {SERVER.split('@')[-1]} "
            f"(user postgres, trust auth); {START_HINT} ({type(exc).__name__}: {exc})"
        )
        if os.environ.get("STOREOPS_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield f"{SERVER}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
