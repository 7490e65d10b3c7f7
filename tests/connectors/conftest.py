"""Fixtures of the connector tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.connectors.oscar_store import OscarStore, require_oscar, running_oscar_store


@pytest.fixture(scope="session")
def oscar_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OscarStore]:
    """The django-oscar test store, seeded, on loopback for the whole session.

    Shared by every test of the session: change only what you created, or what your test
    alone uses (pick orders and SKUs by number), and do not assume counts stay as seeded.
    """
    require_oscar()
    with running_oscar_store(tmp_path_factory.mktemp("oscar-store")) as store:
        yield store
