"""Tamper-evident audit ledger: every run is a SHA-256 chain of events.

The public API is re-exported here; `open_ledger` picks a backend from a URL. Standard
library only (sqlite3 for the default backend; asyncpg is imported only when a
postgresql:// URL is opened); must not import the engine, Prefect, httpx or ruamel, so
the engine and the simulator can use it without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from storeops.ledger.base import (
    RUN_FINISHED,
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
    format_timestamp,
)
from storeops.ledger.canonical import GENESIS, canonical_json, sha256_hex
from storeops.ledger.sqlite import SqliteLedger

__all__ = [
    "GENESIS",
    "RUN_FINISHED",
    "ConcurrentAppendError",
    "DefinitionNotFoundError",
    "Ledger",
    "LedgerCorruptError",
    "LedgerError",
    "NewEvent",
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


def _postgresql(url: str) -> Ledger:
    # Imported here so that SQLite users never import asyncpg.
    from storeops.ledger.postgres import PostgresLedger

    return PostgresLedger(url)


# URL scheme -> opener. Adding a backend is one line here.
_BACKENDS: Final[dict[str, Callable[[str], Ledger]]] = {
    "sqlite": lambda url: SqliteLedger(url.removeprefix("sqlite:///")),
    "postgresql": _postgresql,
    "postgres": _postgresql,
}


def open_ledger(url: str | os.PathLike[str]) -> Ledger:
    """Open the ledger at `url`: a file path, `:memory:`, `sqlite:///relative/path`,
    `sqlite:////absolute/path` or `postgresql://user@host:port/database[?schema=name]`
    (also `postgres://`, `postgresql+asyncpg://`; see `storeops.ledger.postgres`).

    Creates a SQLite database (and its parent directories) if missing; on PostgreSQL the
    database must exist and the ledger's schema and tables are created if missing.
    Raises LedgerError for an unknown scheme or a server that cannot be reached.
    """
    if not isinstance(url, str):
        return SqliteLedger(url)
    scheme, sep, _ = url.partition("://")
    if not sep:
        return SqliteLedger(url)
    base_scheme = scheme.split("+", 1)[0].lower()  # postgresql+asyncpg -> postgresql
    opener = _BACKENDS.get(base_scheme)
    if opener is None:
        raise LedgerError(
            f"cannot open ledger {url!r}: unknown scheme {scheme!r}; expected a file path, "
            f"sqlite:///path or postgresql://…"
        )
    if base_scheme == "sqlite" and not url.startswith("sqlite:///"):
        raise LedgerError(
            f"cannot open ledger {url!r}: a SQLite URL has three slashes, "
            "sqlite:///relative/path or sqlite:////absolute/path"
        )
    return opener(url)
