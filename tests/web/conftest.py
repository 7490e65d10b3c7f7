"""The inbox served for real: uvicorn on 127.0.0.1 in a thread, a temporary STOREOPS_HOME.

The library is the valid fixture SOPs plus tests/web/sops (a customer-service step with
every field type and evidence, and an SOP full of markup); the roster is the fixtures'
team plus gus, who works in the warehouse only (eve holds warehouse and CS).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from storeops.runtime import Engine
from storeops.settings import Settings
from storeops.web import create_app
from storeops.web.auth import set_password
from tests.conftest import FIXTURES, VALID

WEB_SOPS = Path(__file__).resolve().parent / "sops"
GUS = "  gus: {name: 古斯, roles: [wh], locale: zh-CN}\n"
PEOPLE = ("ann", "bo", "cai", "dee", "eve", "fay", "gus")


def password_of(person: str) -> str:
    return f"{person}-pass-1234"


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("library")
    for path in [*VALID.glob("*.yaml"), *WEB_SOPS.glob("*.yaml")]:
        if path.name != "team.yaml":
            shutil.copy(path, folder / path.name)
    (folder / "team.yaml").write_text(
        (VALID / "team.yaml").read_text(encoding="utf-8") + GUS, encoding="utf-8"
    )
    return folder


def make_settings(home: Path, library: Path) -> Settings:
    return Settings(
        home=str(home),
        ledger=str(home / "ledger.db"),
        sops=str(library),
        templates=str(FIXTURES / "templates"),
        roster=str(library / "team.yaml"),
    )


@dataclass
class Served:
    url: str
    settings: Settings
    engine: Engine  # the tests' own handle on the same ledger

    @property
    def home(self) -> Path:
        return self.settings.home

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)

    def sign_in(self, person: str, password: str | None = None) -> httpx.Client:
        client = self.client()
        answer = sign_in(client, person, password or password_of(person))
        assert 303 == answer.status_code, answer.text
        return client

    def start_reply(self, inquiry: str = "Q-1") -> str:
        run_id: str = self.engine.start("cs-reply", {"inquiry": inquiry}, actor="ann")
        return run_id

    def events(self, run_id: str, kind: str) -> list[dict[str, Any]]:
        return [e.data for e in self.engine.ledger.events(run_id) if e.type == kind]


class Thread(threading.Thread):
    def __init__(self, server: uvicorn.Server) -> None:
        super().__init__(daemon=True, name="inbox")
        self.server = server

    def run(self) -> None:
        self.server.run()


@pytest.fixture
def inbox(tmp_path: Path, library: Path) -> Iterator[Served]:
    with serve(make_settings(tmp_path / "home", library)) as served:
        yield served


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[Served]:
    """The inbox over `settings` on a loopback port (everyone has a password; 1 MiB files)."""
    for person in PEOPLE:
        set_password(settings.home, person, password_of(person))
    app = create_app(settings, max_upload_mib=1)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = Thread(server)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the inbox server stopped while starting"
        assert time.monotonic() < deadline, "the inbox server never started"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    engine = settings.engine()
    try:
        yield Served(f"http://127.0.0.1:{port}", settings, engine)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        settings.close()


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: httpx.Client, person: str, password: str) -> httpx.Response:
    page = client.get("/signin")
    assert 200 == page.status_code
    return client.post(
        "/signin", data={"csrf": csrf_of(page.text), "person": person, "password": password}
    )


def reply_form(csrf: str, **overrides: str) -> dict[str, str]:
    """A complete, valid answer to cs-reply's `reply` step (files go separately)."""
    form = {
        "csrf": csrf,
        "action": "complete",
        "c.1": "done",
        "c.2": "done",
        "c.3": "na",
        "c.3.reason": "no delay",
        "f.answer": "Your parcel left today.",
        "f.channel": "email",
        "f.minutes": "12",
        "f.refund": "0",
        "f.satisfied": "true",
        "f.follow_up": "2026-11-20",
        "f.call_at": "2026-11-20T10:30",
        "f.tags": "shipping\ndelay",
        "f.wait": "2h",
        "tz": "-480",
    }
    form.update(overrides)
    return form


PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99"
    b"=\x1d\x00\x00\x00\x00IEND\xaeB`\x82"
)
