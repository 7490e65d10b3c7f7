"""One real Prefect server per test session, started and stopped through storeops.stack.

NOTES.md: a server per test costs seconds each, so a session shares one. It starts from
the pre-migrated database template (~3.5 s; ~10-14 s the very first time on a machine,
which also writes the template), without the UI, on a free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from storeops.stack import Stack

# Environment a Prefect client reads; set for the session, restored afterwards.
CLIENT_ENV = ("PREFECT_API_URL", "PREFECT_HOME")


@contextlib.contextmanager
def running_prefect_server(home: Path, *, timeout: float = 120.0) -> Iterator[str]:
    """Start a Prefect server under `home`, yield its API URL (…/api), stop it after."""
    stack = Stack(home, port=0, ui=False, runner=False)
    result = stack.up(timeout=timeout)
    try:
        yield result.urls["prefect_api"]
    finally:
        _drain_prefect_clients()
        stack.down()


@contextlib.contextmanager
def prefect_client_env(api_url: str, client_home: Path) -> Iterator[None]:
    """Point Prefect clients at `api_url`: in this process and in subprocesses.

    PREFECT_HOME moves the clients' profiles and result storage off ~/.prefect. Prefect
    reads the environment once at import into a global settings context, so when it is
    already imported that context is rebuilt (on entry and again on exit).
    """
    saved = {name: os.environ.get(name) for name in CLIENT_ENV}
    client_home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_API_URL"] = api_url
    os.environ["PREFECT_HOME"] = str(client_home)
    _refresh_prefect_settings()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _refresh_prefect_settings()


@contextlib.contextmanager
def session_prefect_server(folder: Path) -> Iterator[str]:
    """The session fixture's body: a server under folder/stack, clients under folder/client."""
    with (
        running_prefect_server(folder / "stack") as api_url,
        prefect_client_env(api_url, folder / "client"),
    ):
        yield api_url


def _drain_prefect_clients(timeout: float = 5.0) -> None:
    """Send logs and events that in-process flows still queue, while the server is up.

    Otherwise they are sent at interpreter exit, to a stopped server ("Error logging to
    API"). Draining stops the workers; Prefect starts new ones on next use.
    """
    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=timeout)
    if "prefect.events.worker" in sys.modules:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=timeout)


def _refresh_prefect_settings() -> None:
    if "prefect.context" in sys.modules:  # importing Prefect here would cost ~2 s
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
