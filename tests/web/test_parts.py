"""The inbox's parts without a server: credentials, signing, throttling, markup, forms,
the diagram, the message catalogue and the CLI's passwd/token commands."""

from __future__ import annotations

import argparse
import importlib.machinery
import io
import json
import re
import stat
import sys
import threading
import types
from pathlib import Path

import pytest
from fastapi import APIRouter
from starlette.routing import NoMatchFound

from storeops.errors import ConfigError
from storeops.loader import Checker
from storeops.spec import SopSpec
from storeops.web import auth, create_app
from storeops.web.cli import cmd_passwd, cmd_token
from storeops.web.diagram import state_svg
from storeops.web.forms import checklist_answers, field_widgets, typed_values, zone_suffix
from storeops.web.markup import markdown, safe_file_name
from storeops.web.messages import MESSAGES, pick_locale, translate
from tests.conftest import VALID
from tests.web.conftest import WEB_SOPS, make_settings

# ---------------------------------------------------------------- credentials


def test_passwords_are_stored_as_salted_scrypt_hashes(tmp_path: Path) -> None:
    auth.set_password(tmp_path, "dee", "correct horse")
    auth.set_password(tmp_path, "eve", "correct horse")
    path = tmp_path / "credentials.json"
    text = path.read_text()
    assert "correct horse" not in text
    people = json.loads(text)["people"]
    dee, eve = people["dee"]["password"], people["eve"]["password"]
    assert ("scrypt", 2**14, 8, 1) == (dee["scheme"], dee["n"], dee["r"], dee["p"])
    assert dee["salt"] != eve["salt"]
    assert dee["hash"] != eve["hash"]  # same password, different salt
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)
    assert 1 == auth.authenticate_password(tmp_path, "dee", "correct horse")
    assert auth.authenticate_password(tmp_path, "dee", "wrong horse") is None
    assert auth.authenticate_password(tmp_path, "nobody", "correct horse") is None
    auth.set_password(tmp_path, "dee", "another one")
    assert 2 == auth.authenticate_password(tmp_path, "dee", "another one")


def test_short_passwords_are_refused(tmp_path: Path) -> None:
    with pytest.raises(auth.CredentialError, match="at least 8 characters"):
        auth.set_password(tmp_path, "dee", "short")
    assert not (tmp_path / "credentials.json").exists()


def test_tokens_name_their_person_and_revoking_ends_everything(tmp_path: Path) -> None:
    token = auth.issue_token(tmp_path, "li.wei")
    assert "li.wei" == auth.token_person(token)
    assert ("li.wei", 1) == auth.authenticate_token(tmp_path, token)
    assert auth.authenticate_token(tmp_path, token + "x") is None
    assert auth.authenticate_token(tmp_path, "garbage") is None
    auth.revoke(tmp_path, "li.wei")
    assert auth.authenticate_token(tmp_path, token) is None
    assert auth.current_generation(tmp_path, "li.wei") is None


def test_the_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    first = auth.load_secret(tmp_path)
    assert 32 == len(first)
    assert first == auth.load_secret(tmp_path)
    assert 0o600 == stat.S_IMODE((tmp_path / "inbox-secret").stat().st_mode)


def test_session_cookies_are_signed_and_expire() -> None:
    signer = auth.Signer(b"k" * 32)
    cookie = signer.session_cookie("dee", 3, now=1000.0)
    session = signer.read_session(cookie, now=1001.0)
    assert session is not None
    assert ("dee", 3) == (session.person, session.generation)
    assert signer.read_session(cookie, now=1000.0 + auth.SESSION_SECONDS + 1) is None
    body, _dot, mac = cookie.rpartition(".")
    assert signer.read_session(body + "." + mac[::-1], now=1001.0) is None
    assert auth.Signer(b"x" * 32).read_session(cookie, now=1001.0) is None
    assert signer.read_session("no-dot", now=1001.0) is None
    assert signer.check_csrf("n", signer.csrf_token("n"))
    assert not signer.check_csrf("n", signer.csrf_token("m"))
    assert not signer.check_csrf("n", None)


def test_the_throttle_counts_attempts_in_a_window() -> None:
    throttle = auth.Throttle(limit=2, window=60)
    assert 0 == throttle.attempt("dee", now=0)
    assert 0 == throttle.attempt("dee", now=10)
    assert 60 == throttle.attempt("dee", now=0)  # refused attempts are not counted
    assert 60 == throttle.wait_seconds("dee", now=0)
    assert 0 == throttle.wait_seconds("eve", now=10)
    assert 0 == throttle.wait_seconds("dee", now=61)  # the first attempt aged out
    assert 0 == throttle.attempt("dee", now=62)
    assert throttle.wait_seconds("dee", now=63) > 0
    throttle.succeeded("dee")
    assert 0 == throttle.wait_seconds("dee", now=63)
    assert 0 == throttle.tracked()
    assert 0 == throttle.attempt("eve", now=100)
    assert 0 == throttle.wait_seconds("eve", now=500)  # aged out: the key is dropped
    assert 0 == throttle.tracked()


def test_parallel_guesses_cannot_slip_past_the_throttle() -> None:
    throttle = auth.Throttle(limit=5, window=600)
    allowed: list[float] = []
    gate = threading.Barrier(40)

    def guess() -> None:
        gate.wait()
        allowed.append(throttle.attempt("dee"))

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 5 == allowed.count(0.0)


# ---------------------------------------------------------------- markup


def test_markdown_marks_up_only_its_own_tags() -> None:
    html = str(markdown("# T <b>\n\nA **b** `<c>` <script>x</script>\n- one\n- two\n\n1. n"))
    assert "<h3>T &lt;b&gt;</h3>" in html
    assert (
        "<p>A <strong>b</strong> <code>&lt;c&gt;</code> &lt;script&gt;x&lt;/script&gt;</p>" in html
    )
    assert "<ul><li>one</li><li>two</li></ul>" in html
    assert "<ol><li>n</li></ol>" in html
    table = str(markdown("| a | b |\n|---|--:|\n| <i> | 2 |"))
    assert "<th>a</th><th>b</th>" in table
    assert "<td>&lt;i&gt;</td><td>2</td>" in table
    assert "a `b" == str(markdown("a `b")).removeprefix("<p>").removesuffix("</p>")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\截图 1.png", "截图 1.png"),
        ('<img src=x onerror="a()">.jpg', "img src_x onerror_a()_.jpg"),
        ("...", "file"),
        ("", "file"),
        (None, "file"),
        ("a" * 200 + ".png", "a" * 116 + ".png"),
    ],
)
def test_file_names_are_sanitized(given: str | None, expected: str) -> None:
    assert expected == safe_file_name(given)


# ---------------------------------------------------------------- forms


def test_form_values_are_gathered_for_the_engine() -> None:
    specs = {
        "tags": {"type": "list"},
        "at": {"type": "datetime"},
        "n": {"type": "int"},
        "text": {"type": "string"},
        "empty": {"type": "string"},
    }
    form = {
        "f.tags": "a\nb, c，d\n",
        "f.at": "2026-11-20T10:30",
        "f.n": " 5 ",
        "f.text": " kept as typed\r\n",
        "f.empty": "  ",
    }
    assert {
        "tags": ["a", "b", "c", "d"],
        "at": "2026-11-20T10:30:00+08:00",
        "n": "5",
        "text": " kept as typed\n",
    } == typed_values("f.", specs, form, zone_suffix("-480"))
    assert "" == zone_suffix("abc")
    assert "-05:30" == zone_suffix("330")
    assert {1: "done", 2: "n/a: not sold here", 3: "n/a"} == checklist_answers(
        4, {"c.1": "done", "c.2": "na", "c.2.reason": " not  sold here ", "c.3": "na"}
    )
    [widget] = field_widgets({"ok": {"type": "bool", "default": True}}, {})
    assert ("select", "true") == (widget["input"], widget["value"])


# ---------------------------------------------------------------- diagram


def _spec(path: Path) -> SopSpec:
    loaded, problems = Checker().load(path)
    assert loaded is not None, problems
    return loaded.spec


@pytest.mark.parametrize("name", sorted(p.stem for p in VALID.glob("*.yaml") if p.stem != "team"))
def test_every_fixture_sop_draws(name: str) -> None:
    spec = _spec(VALID / f"{name}.yaml")
    svg = str(state_svg(spec, "en", current={spec.start}))
    assert svg.startswith('<svg class="diagram"')
    assert '<g class="node' in svg
    assert 1 == svg.count(" current")
    found = re.search(r'width="(\d+)"', svg)
    assert found is not None
    width = float(found.group(1))
    xs = [float(x) for x in re.findall(r'(?:x|cx|x1|x2)="([\d.]+)"', svg)]
    assert max(xs) <= width  # nothing is drawn outside the picture


def test_diagram_labels_are_escaped() -> None:
    svg = str(state_svg(_spec(WEB_SOPS / "xss-probe.yaml"), "en"))
    assert "<img" not in svg
    assert "<script" not in svg
    assert "&lt;img src=x onerror=alert(&#39;step&#39;)&gt;" in svg


# ---------------------------------------------------------------- messages


def test_every_message_exists_in_both_locales_with_the_same_placeholders() -> None:
    for key, forms in MESSAGES.items():
        assert {"en", "zh-CN"} == set(forms), key
        names = [set(re.findall(r"{(\w+)}", forms[loc])) for loc in ("en", "zh-CN")]
        assert names[0] == names[1], key
    assert "今日任务" == translate("zh-CN", "nav.today")
    assert "Today" == translate("fr", "nav.today")
    assert "zh-CN" == pick_locale("zh-TW,en;q=0.5")
    assert "en" == pick_locale("de-DE, en-GB;q=0.8")
    assert "zh-CN" == pick_locale(None, "zh-CN")


# ---------------------------------------------------------------- CLI commands


def test_cmd_passwd_and_cmd_token(
    tmp_path: Path,
    library: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = make_settings(tmp_path, library)
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    args = argparse.Namespace(person="dee", password_stdin=True)
    assert 0 == cmd_passwd(args, cfg)
    assert "password set for dee" in capsys.readouterr().out
    assert 1 == auth.authenticate_password(tmp_path, "dee", "a-long-password")
    assert 0 == cmd_token(argparse.Namespace(person="dee", revoke=False), cfg)
    token = capsys.readouterr().out.splitlines()[0]
    assert ("dee", 2) == auth.authenticate_token(tmp_path, token)  # a new token: generation 2
    assert 0 == cmd_token(argparse.Namespace(person="dee", revoke=True), cfg)
    assert auth.authenticate_token(tmp_path, token) is None
    with pytest.raises(ConfigError, match="'zed' is not in the roster"):
        cmd_token(argparse.Namespace(person="zed", revoke=False), cfg)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(ConfigError, match="at least 8"):
        cmd_passwd(args, cfg)


# ---------------------------------------------------------------- the analytics router


def test_the_analytics_module_s_router_is_mounted_under_analytics(
    tmp_path: Path, library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, library)
    with pytest.raises(NoMatchFound):
        create_app(settings).url_path_for("overview")
    module = types.ModuleType("storeops.web.analytics")
    module.__spec__ = importlib.machinery.ModuleSpec("storeops.web.analytics", None)
    router = APIRouter()

    @router.get("/")
    def overview() -> dict[str, str]:
        return {"page": "analytics"}

    module.router = router  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "storeops.web.analytics", module)
    assert "/analytics/" == create_app(settings).url_path_for("overview")


def test_ended_sessions_are_remembered_until_they_would_have_expired(tmp_path: Path) -> None:
    auth.set_password(tmp_path, "dee", "dee-pass-1234")
    early = auth.Session("dee", 1, expires=1_000.0, nonce="early")
    late = auth.Session("dee", 1, expires=5_000.0, nonce="late")
    auth.end_session(tmp_path, early, now=500.0)
    assert {"early": 1_000.0} == auth.read_credentials(tmp_path)["dee"]["ended"]
    auth.end_session(tmp_path, late, now=2_000.0)  # "early" has expired by now: dropped
    entry = auth.read_credentials(tmp_path)["dee"]
    assert {"late": 5_000.0} == entry["ended"]
    assert 1 == entry["generation"]  # the person's other sessions go on
    assert auth.authenticate_password(tmp_path, "dee", "dee-pass-1234") == 1


def test_evidence_types_come_from_the_bytes_for_images_and_pdfs() -> None:
    from storeops.web.evidence import media_type_of

    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 8
    assert "image/png" == media_type_of("a.jpg", "image/jpeg", png)  # the bytes win
    assert "application/pdf" == media_type_of("a.bin", None, b"%PDF-1.7\n")
    assert "image/webp" == media_type_of("a", "", b"RIFF\0\0\0\0WEBPVP8 ")
    assert "application/octet-stream" == media_type_of("x.png", "image/png", b"<html>")
    assert "text/csv" == media_type_of("sales.csv", None, b"sku,qty\n")  # not sniffed
