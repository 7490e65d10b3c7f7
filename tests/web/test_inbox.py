"""The inbox over HTTP: a real uvicorn server on 127.0.0.1, httpx as the browser."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from storeops.web.auth import issue_token, set_password
from storeops.web.context import SESSION_COOKIE
from tests.conftest import FIXTURES, ROOT, stop_process
from tests.web.conftest import PNG, Served, csrf_of, make_settings, reply_form, serve, sign_in


def _step(run_id: str, step: str = "reply") -> str:
    return f"/runs/{run_id}/steps/{step}"


def _complete(client: httpx.Client, run_id: str, **overrides: str) -> httpx.Response:
    page = client.get(_step(run_id))
    assert 200 == page.status_code, page.text
    return client.post(
        _step(run_id),
        data=reply_form(csrf_of(page.text), **overrides),
        files={"e.screenshot": ("reply.png", PNG, "image/png")},
    )


# ---------------------------------------------------------------- signing in


def test_pages_need_a_sign_in_and_come_back_after_it(inbox: Served) -> None:
    run_id = inbox.start_reply()
    client = inbox.client()
    answer = client.get(_step(run_id))
    assert 303 == answer.status_code
    target = answer.headers["location"]
    assert target.startswith("/signin?next=%2Fruns%2F")
    page = client.get(target)
    answer = client.post(
        "/signin",
        data={
            "csrf": csrf_of(page.text),
            "person": "dee",
            "password": "dee-pass-1234",
            "next": _step(run_id),
        },
    )
    assert 303 == answer.status_code
    assert _step(run_id) == answer.headers["location"]
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Reply to the inquiry" in client.get(_step(run_id)).text


def test_sign_in_with_a_password_shows_todays_tasks(inbox: Served) -> None:
    run_id = inbox.start_reply()
    page = inbox.sign_in("dee").get("/")
    assert 200 == page.status_code
    assert f'data-run="{run_id}" data-step="reply"' in page.text
    assert "Today&#39;s tasks" in page.text
    # cai is a clerk: the CS step is not on their list
    assert run_id not in inbox.sign_in("cai").get("/").text


def test_sign_in_with_a_token(inbox: Served) -> None:
    inbox.start_reply()
    token = issue_token(inbox.home, "eve")
    assert token.startswith("eve.")
    stored = (inbox.home / "credentials.json").read_text()
    assert token not in stored
    assert token.split(".")[1] not in stored
    client = inbox.client()
    page = client.get("/signin")
    answer = client.post("/signin", data={"csrf": csrf_of(page.text), "token": token})
    assert 303 == answer.status_code
    assert 'data-person="eve"' in client.get("/").text
    newer = issue_token(inbox.home, "eve")  # the old token stops working
    other = inbox.client()
    page = other.get("/signin")
    assert (
        401 == other.post("/signin", data={"csrf": csrf_of(page.text), "token": token}).status_code
    )
    page = other.get("/signin")
    assert (
        303 == other.post("/signin", data={"csrf": csrf_of(page.text), "token": newer}).status_code
    )


def test_failed_sign_ins_are_throttled_per_person(inbox: Served) -> None:
    client = inbox.client()
    for _ in range(5):
        answer = sign_in(client, "dee", "wrong-password")
        assert 401 == answer.status_code
        assert "do not match" in answer.text
    answer = sign_in(client, "dee", "dee-pass-1234")  # even the right one, for now
    assert 429 == answer.status_code
    assert "Too many failed sign-ins for dee. Try again in 10 minute(s)." in answer.text
    assert 303 == sign_in(inbox.client(), "eve", "eve-pass-1234").status_code  # others may


def test_unknown_people_are_told_the_same_as_wrong_passwords(inbox: Served) -> None:
    answer = sign_in(inbox.client(), "nobody", "whatever-123")
    assert 401 == answer.status_code
    assert "do not match" in answer.text


def test_sign_out_ends_the_session_and_a_new_password_ends_the_others(inbox: Served) -> None:
    client = inbox.sign_in("dee")
    kept = inbox.sign_in("dee")
    page = client.get("/")
    copied = client.cookies.get(SESSION_COOKIE)
    answer = client.post("/signout", data={"csrf": csrf_of(page.text)})
    assert 303 == answer.status_code
    assert "/signin?out=1" == answer.headers["location"]
    assert 200 == client.get("/signin?out=abc").status_code  # odd query text: still the page
    assert 303 == client.get("/").status_code
    # a copy of the signed-out cookie (a shared computer, a stolen cookie) is refused too
    thief = inbox.client()
    thief.cookies.set(SESSION_COOKIE, copied)
    assert 303 == thief.get("/").status_code
    assert 200 == kept.get("/").status_code
    set_password(inbox.home, "dee", "a-new-password")
    assert 303 == kept.get("/").status_code  # signed in with the old password


def test_a_roster_change_reaches_the_running_inbox(tmp_path: Path, library: Path) -> None:
    """Someone made inactive in team.yaml loses access at their next request, and a new
    role counts at once, without restarting the inbox."""
    mine = tmp_path / "library"
    shutil.copytree(library, mine)
    team = mine / "team.yaml"
    with serve(make_settings(tmp_path / "home", mine)) as served:
        dee = served.sign_in("dee")
        assert 200 == dee.get("/").status_code
        text = team.read_text(encoding="utf-8")
        team.write_text(
            text.replace(
                "dee: {name: Dee, roles: [cs], locale: en}",
                "dee: {name: Dee, roles: [cs], locale: en, active: false}",
            )
        )
        assert 303 == dee.get("/").status_code  # signed out: no longer on the team
        assert 401 == sign_in(served.client(), "dee", "dee-pass-1234").status_code
        team.write_text("roles: [broken")  # a half-saved edit: the team in force stays
        assert 200 == served.sign_in("eve").get("/").status_code


def test_a_run_is_shown_to_its_roles_and_leads_only(inbox: Served) -> None:
    run_id = inbox.start_reply("Q-private")
    gus = inbox.sign_in("gus")  # warehouse only: cs-reply is not his
    refused = gus.get(f"/runs/{run_id}")
    assert 403 == refused.status_code
    assert "Q-private" not in refused.text  # its parameters and answers stay private
    assert "Q-private" not in gus.get(_step(run_id)).text  # the step page says whose it is
    assert "Reply to the inquiry · Q-private" in inbox.sign_in("dee").get(_step(run_id)).text
    assert 200 == inbox.sign_in("dee").get(f"/runs/{run_id}").status_code  # cs
    assert 200 == inbox.sign_in("ann").get(f"/runs/{run_id}").status_code  # a lead


def test_a_forged_session_cookie_is_ignored(inbox: Served) -> None:
    client = inbox.sign_in("dee")
    value = client.cookies["storeops_session"]
    body, _dot, mac = value.rpartition(".")
    forged = httpx.Client(base_url=inbox.url, cookies={"storeops_session": body + "." + "0" * 64})
    assert 303 == forged.get("/").status_code
    assert mac  # the real one is signed


# ---------------------------------------------------------------- CSRF


def test_posts_without_the_csrf_token_are_refused(inbox: Served) -> None:
    run_id = inbox.start_reply()
    client = inbox.sign_in("dee")
    form = reply_form("not-the-token")
    answer = client.post(_step(run_id), data=form)
    assert 403 == answer.status_code
    assert "This form has expired or did not come from this inbox" in answer.text
    del form["csrf"]
    assert 403 == client.post(_step(run_id), data=form).status_code
    assert [] == inbox.events(run_id, "task.completed")
    assert 403 == client.post("/signout", data={}).status_code
    assert 403 == client.post("/start/cs-reply", data={"p.inquiry": "X"}).status_code
    # the sign-in form too: a token without the matching cookie is refused
    page = inbox.client().get("/signin")
    stranger = inbox.client()
    answer = stranger.post(
        "/signin", data={"csrf": csrf_of(page.text), "person": "dee", "password": "dee-pass-1234"}
    )
    assert 403 == answer.status_code


# ---------------------------------------------------------------- completing


def test_complete_a_task_with_typed_fields_checklist_and_evidence(inbox: Served) -> None:
    run_id = inbox.start_reply()
    client = inbox.sign_in("dee")
    answer = _complete(client, run_id, note="called back")
    assert 303 == answer.status_code, answer.text
    assert answer.headers["location"].startswith(f"/?done={run_id}&step=reply")
    assert "Recorded: reply in run" in client.get(answer.headers["location"]).text
    [done] = inbox.events(run_id, "task.completed")
    assert "dee" == done["actor"]
    assert {
        "answer": "Your parcel left today.",
        "channel": "email",
        "minutes": 12,
        "refund": 0.0,
        "satisfied": True,
        "follow_up": "2026-11-20",
        "call_at": "2026-11-20T10:30:00+08:00",
        "tags": ["shipping", "delay"],
        "wait": 7200.0,
    } == done["fields"]
    assert {"1": "done", "2": "done", "3": "n/a: no delay"} == done["checklist"]
    assert "called back" == done["note"]
    # the run went on (no runner here: driven in the inbox's process)
    assert ["review"] == [t.step for t in inbox.engine.load(run_id)[0].active_tasks()]


def test_evidence_is_stored_by_digest_and_recorded_in_the_ledger(inbox: Served) -> None:
    run_id = inbox.start_reply()
    client = inbox.sign_in("dee")
    page = client.get(_step(run_id))
    answer = client.post(
        _step(run_id),
        data=reply_form(csrf_of(page.text)),
        files={"e.screenshot": ("../../etc/回复 截图<b>.png", PNG, "image/png")},
    )
    assert 303 == answer.status_code, answer.text
    digest = hashlib.sha256(PNG).hexdigest()
    [done] = inbox.events(run_id, "task.completed")
    assert {"screenshot": [digest]} == done["evidence"]
    stored = inbox.home / "evidence" / digest[:2] / digest
    assert PNG == stored.read_bytes()
    assert ["回复 截图_b_.png"] == json.loads(stored.with_suffix(".json").read_text())["names"]
    served = client.get(f"/evidence/{digest}")
    assert 200 == served.status_code
    assert PNG == served.content
    assert "image/png" == served.headers["content-type"]
    assert "nosniff" == served.headers["x-content-type-options"]
    assert f"/evidence/{digest}" in client.get(f"/runs/{run_id}").text
    assert 303 == inbox.client().get(f"/evidence/{digest}").status_code  # signed-in only


def test_evidence_of_the_wrong_kind_or_size_is_refused(inbox: Served) -> None:
    run_id = inbox.start_reply()
    client = inbox.sign_in("dee")
    page = client.get(_step(run_id))
    answer = client.post(
        _step(run_id),
        data=reply_form(csrf_of(page.text)),
        files={"e.screenshot": ("notes.html", b"<script>alert(1)</script>", "text/html")},
    )
    assert 422 == answer.status_code
    assert "accepts image/*, not text/html" in answer.text
    disguised = client.post(  # a page claiming to be a PNG: the bytes say otherwise
        _step(run_id),
        data=reply_form(csrf_of(page.text)),
        files={"e.screenshot": ("shot.png", b"<html><script>alert(1)</script>", "image/png")},
    )
    assert 422 == disguised.status_code
    assert "accepts image/*, not application/octet-stream" in disguised.text
    answer = client.post(
        _step(run_id),
        data=reply_form(csrf_of(page.text)),
        files={"e.screenshot": ("huge.png", PNG + b"\0" * (1 << 20), "image/png")},
    )
    assert 422 == answer.status_code
    assert "larger than 1 MiB" in answer.text
    assert [] == inbox.events(run_id, "task.completed")
    assert [] == [p for p in (inbox.home / "evidence").rglob("*") if p.is_file()]


def test_a_submission_past_the_size_limit_is_refused_before_it_is_stored(inbox: Served) -> None:
    """The inbox runs with 1 MiB files, so a submission may carry at most 4 MiB: a larger
    declared body is refused unread, and one sent in chunks stops being read at the limit."""
    run_id = inbox.start_reply()
    client = inbox.sign_in("dee")
    csrf = csrf_of(client.get(_step(run_id)).text)
    photos = {f"e.screenshot{n}": (f"p{n}.png", b"\0" * (1 << 20), "image/png") for n in range(5)}
    answer = client.post(_step(run_id), data=reply_form(csrf), files=photos)
    assert 413 == answer.status_code
    assert "at most 4 MiB per submission" in answer.text

    def chunks() -> Iterator[bytes]:  # one well-formed 5 MiB file, no Content-Length
        yield (
            b'--x\r\nContent-Disposition: form-data; name="e.screenshot"; '
            b'filename="p.png"\r\nContent-Type: image/png\r\n\r\n'
        )
        for _ in range(5):
            yield b"\0" * (1 << 20)
        yield b"\r\n--x--\r\n"

    streamed = client.post(
        _step(run_id),
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert 413 == streamed.status_code
    assert "at most 4 MiB per submission" in streamed.text
    assert [] == inbox.events(run_id, "task.completed")
    assert 200 == client.get("/").status_code  # the inbox goes on


def test_a_refused_form_keeps_what_was_typed_and_the_uploaded_files(inbox: Served) -> None:
    run_id = inbox.start_reply()
    client = inbox.sign_in("dee")
    answer = _complete(client, run_id, **{"f.minutes": "9999", "f.answer": "kept <text>"})
    assert 422 == answer.status_code
    assert "minutes: 9999 is above the maximum 600" in answer.text
    assert "kept &lt;text&gt;</textarea>" in answer.text
    digest = hashlib.sha256(PNG).hexdigest()
    assert f'name="k.screenshot" value="{digest}"' in answer.text
    # sent again without the file: the kept digest is enough
    answer = client.post(
        _step(run_id),
        data={**reply_form(csrf_of(answer.text)), "k.screenshot": digest},
    )
    assert 303 == answer.status_code, answer.text
    [done] = inbox.events(run_id, "task.completed")
    assert {"screenshot": [digest]} == done["evidence"]


def test_missing_required_input_is_explained(inbox: Served) -> None:
    run_id = inbox.start_reply()
    client = inbox.sign_in("dee")
    page = client.get(_step(run_id))
    form = reply_form(csrf_of(page.text))
    del form["c.2"]
    answer = client.post(_step(run_id), data=form)
    assert 422 == answer.status_code
    assert "checklist item 2" in answer.text
    assert "is not ticked" in answer.text


def test_the_wrong_person_is_refused_and_the_refusal_recorded(inbox: Served) -> None:
    run_id = inbox.start_reply()
    client = inbox.sign_in("cai")  # a clerk, not customer service
    page = client.get(_step(run_id))
    assert 200 == page.status_code
    assert 'id="not-yours"' in page.text
    assert "该步骤属于 客服，您的角色是 运营，无法处理。" in page.text  # cai reads Chinese
    assert 'name="f.answer"' not in page.text  # no form, no instructions
    answer = client.post(
        _step(run_id),
        data=reply_form(csrf_of(page.text)),
        files={"e.screenshot": ("x.png", PNG, "image/png")},
    )
    assert 403 == answer.status_code
    assert "cai may not act on step &#39;reply&#39;" in answer.text
    assert "此次拒绝已记入流程的审计账本。" in answer.text
    [refused] = inbox.events(run_id, "task.refused")
    assert ("cai", "not_allowed") == (refused["actor"], refused["reason"])
    assert [] == inbox.events(run_id, "task.completed")
    assert not (inbox.home / "evidence").exists()  # nothing stored for someone refused


def test_a_double_submit_records_one_completion(inbox: Served) -> None:
    run_id = inbox.start_reply()
    client = inbox.sign_in("dee")
    page = client.get(_step(run_id))
    form = reply_form(csrf_of(page.text))
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(2)

    def submit() -> None:
        with inbox.client() as twin:
            twin.cookies = client.cookies
            barrier.wait()
            answers.append(
                twin.post(
                    _step(run_id), data=form, files={"e.screenshot": ("a.png", PNG, "image/png")}
                )
            )

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [303, 409] == sorted(a.status_code for a in answers)
    second = next(a for a in answers if a.status_code == 409)
    assert "was already done by dee at" in second.text
    assert 1 == len(inbox.events(run_id, "task.completed"))
    # and a later visit of the link says who did it
    assert "This step was already completed by dee" in client.get(_step(run_id)).text


def test_a_lead_rejects_with_a_reason_and_the_step_comes_back(inbox: Served) -> None:
    run_id = inbox.start_reply()
    assert 303 == _complete(inbox.sign_in("dee"), run_id).status_code
    lead = inbox.sign_in("ann")
    page = lead.get(_step(run_id, "review"))
    assert 'id="reject"' in page.text
    assert "Approve" in page.text
    csrf = csrf_of(page.text)
    answer = lead.post(_step(run_id, "review"), data={"csrf": csrf, "action": "reject"})
    assert 422 == answer.status_code
    assert "needs a reason" in answer.text
    answer = lead.post(
        _step(run_id, "review"), data={"csrf": csrf, "action": "reject", "reason": "too curt"}
    )
    assert 303 == answer.status_code
    assert "outcome=rejected" in answer.headers["location"]
    assert "too curt" == inbox.events(run_id, "task.rejected")[0]["reason"]
    assert ["reply"] == [t.step for t in inbox.engine.load(run_id)[0].active_tasks()]
    again = _complete(inbox.sign_in("dee"), run_id)
    assert 303 == again.status_code
    page = lead.get(_step(run_id, "review"))
    answer = lead.post(_step(run_id, "review"), data={"csrf": csrf_of(page.text)})
    assert 303 == answer.status_code
    assert "succeeded" == inbox.engine.load(run_id)[0].status


# ---------------------------------------------------------------- pages


def test_leads_see_open_steps_per_role(inbox: Served) -> None:
    inbox.start_reply("Q-1")
    inbox.start_reply("Q-2")
    page = inbox.sign_in("ann").get("/")
    assert "Open steps by role (all runs)" in page.text
    assert '<tr data-role="cs"><td>Customer service <code>cs</code></td><td class="num">2</td>' in (
        page.text
    )
    assert "Open steps by role" not in inbox.sign_in("dee").get("/").text


def test_people_read_the_inbox_in_their_own_language(inbox: Served) -> None:
    run_id = inbox.start_reply()
    page = inbox.sign_in("gus").get(_step(run_id))  # gus: warehouse, zh-CN
    assert '<html lang="zh-CN">' in page.text
    assert "该步骤属于 客服，您的角色是 物流，无法处理。" in page.text
    page = inbox.sign_in("eve").get(_step(run_id))  # eve: warehouse and CS, English
    assert "Reply to the inquiry" in page.text
    assert 'name="f.answer"' in page.text
    today = inbox.sign_in("eve").get("/").text
    assert '· task · <span class="roles" title="cs">Customer service</span>' in today
    chinese = inbox.client()
    signin = chinese.get("/signin", headers={"accept-language": "zh-CN,zh;q=0.9"})
    assert "使用密码登录" in signin.text


def test_the_run_page_shows_timeline_diagram_and_chain(inbox: Served) -> None:
    run_id = inbox.start_reply()
    client = inbox.sign_in("dee")
    page = client.get(f"/runs/{run_id}")
    assert 200 == page.status_code
    count = len(inbox.engine.ledger.events(run_id))
    assert f"Ledger chain intact: {count} event(s) verified." in page.text
    assert '<g class="node task current" data-state="reply">' in page.text
    assert "task reply assigned to cs: dee, eve" in page.text
    assert "stateDiagram-v2" in page.text
    assert 404 == client.get("/runs/no-such-run").status_code
    # tamper with the ledger: the page says so
    import sqlite3

    with sqlite3.connect(inbox.settings.ledger_url) as db:
        db.execute(
            "UPDATE events SET body = CAST(replace(CAST(body AS TEXT), 'Q-1', 'Q-9') AS BLOB) "
            "WHERE run_id = ? AND seq = 1",
            (run_id,),
        )
    page = client.get(f"/runs/{run_id}")
    assert "Ledger chain BROKEN" in page.text


def test_start_an_sop_from_a_form_made_of_its_params(inbox: Served) -> None:
    client = inbox.sign_in("dee")
    listing = client.get("/start")
    assert 'data-sop="cs-reply"' in listing.text
    assert 'class=" locked" data-sop="approvals"' in listing.text  # dee holds none of its roles
    page = client.get("/start/cs-reply")
    assert 'name="p.inquiry"' in page.text
    assert '<option value="low" selected>' in page.text
    answer = client.post("/start/cs-reply", data={"csrf": csrf_of(page.text), "p.priority": "x"})
    assert 422 == answer.status_code
    assert "x&#39; is not one of low, high" in answer.text
    answer = client.post(
        "/start/cs-reply",
        data={"csrf": csrf_of(page.text), "p.inquiry": "Q-77", "p.priority": "high"},
    )
    assert 303 == answer.status_code
    run_id = answer.headers["location"].removeprefix("/runs/")
    started = inbox.engine.ledger.events(run_id)[0].data
    assert ("dee", {"inquiry": "Q-77", "priority": "high"}) == (started["actor"], started["params"])
    assert run_id in client.get("/").text
    refused = client.post("/start/approvals", data={"csrf": csrf_of(page.text)})
    assert 403 == refused.status_code
    assert 404 == client.get("/start/no-such-sop").status_code


def test_markup_in_sop_text_form_values_and_file_names_is_shown_as_text(inbox: Served) -> None:
    run_id = inbox.engine.start(
        "xss-probe", {"note": "<script>alert('param')</script>"}, actor="ann"
    )
    client = inbox.sign_in("dee")
    pages = [client.get("/"), client.get(_step(run_id, "poke")), client.get("/start/xss-probe")]
    answer = client.post(
        _step(run_id, "poke"),
        data={
            "csrf": csrf_of(pages[1].text),
            "c.1": "done",
            "f.text": "<img src=x onerror=alert('value')>",
        },
        files={"e.file": ("<img src=x onerror=alert('file')>.txt", b"hello", "text/plain")},
    )
    assert 303 == answer.status_code, answer.text
    pages.append(client.get(f"/runs/{run_id}"))
    digest = hashlib.sha256(b"hello").hexdigest()
    download = client.get(f"/evidence/{digest}")
    for page in pages:
        assert 200 == page.status_code
        lowered = page.text.lower()
        assert "<script>alert" not in lowered
        assert "<img src=x" not in lowered
        assert "<svg onload" not in lowered
        assert "<iframe" not in lowered
        assert "<b onmouseover" not in lowered
        assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "&lt;img src=x onerror=alert(&#39;step&#39;)&gt;" in pages[0].text
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt; probe" in pages[2].text
    assert "Hello &lt;script&gt;alert(&#39;instructions&#39;)&lt;/script&gt;" in pages[1].text
    assert "<strong>&lt;i&gt;bold&lt;/i&gt;</strong>" in pages[1].text
    assert "&lt;img src=x onerror=alert(&#39;value&#39;)&gt;" in pages[3].text
    assert "alert(&#39;param&#39;)" in pages[3].text
    assert "img src_x onerror_alert(_file_)_.txt" in pages[3].text  # the sanitized name
    assert "attachment" in download.headers["content-disposition"]
    assert "application/octet-stream" == download.headers["content-type"]


def test_static_files_and_health(inbox: Served) -> None:
    client = inbox.client()
    assert {"ok": True, "service": "storeops-inbox"} == client.get("/health").json()
    assert "text/css" in client.get("/static/inbox.css").headers["content-type"]
    assert 404 == client.get("/static/../auth.py").status_code
    assert 404 == client.get("/static/other.js").status_code


# ---------------------------------------------------------------- the component


def test_python_m_storeops_web_serves_and_records_its_address(
    tmp_path: Path, library: Path
) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "STOREOPS_HOME": str(home),
        "STOREOPS_SOPS": str(library),
        "STOREOPS_TEMPLATES": str(FIXTURES / "templates"),
        "STOREOPS_ROSTER": str(library / "team.yaml"),
    }
    log = (tmp_path / "inbox.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "storeops.web", "--port", "0"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    log.close()
    try:
        deadline = time.monotonic() + 30
        while not (home / "inbox.json").exists():
            assert process.poll() is None, (tmp_path / "inbox.log").read_text()
            assert time.monotonic() < deadline, "the inbox never wrote inbox.json"
            time.sleep(0.05)
        url = json.loads((home / "inbox.json").read_text())["url"]
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/health").json()["ok"]
        assert (home / "inbox-secret").stat().st_mode & 0o077 == 0
    finally:
        assert 0 == stop_process(process, tmp_path / "inbox.log")
    assert not (home / "inbox.json").exists()


def test_a_lead_reassigns_a_step_and_only_the_new_holder_may_do_it(inbox: Served) -> None:
    run_id = inbox.start_reply("Q-claim")
    lead = inbox.sign_in("ann")
    page = lead.get(f"/runs/{run_id}/steps/reply")
    assert 'id="reassign"' in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    moved = lead.post(
        f"/runs/{run_id}/steps/reply/claim", data={"csrf": csrf.group(1), "to": "eve"}
    )
    assert 303 == moved.status_code
    [claim] = inbox.events(run_id, "task.claimed")
    assert ("eve", "ann") == (claim["actor"], claim["by"])
    dee = inbox.sign_in("dee")
    shown = dee.get(f"/runs/{run_id}/steps/reply")
    assert "Claimed by eve" in shown.text
    refused = dee.post(
        f"/runs/{run_id}/steps/reply/claim",
        data={"csrf": re.search(r'name="csrf" value="([^"]+)"', shown.text).group(1)},  # type: ignore[union-attr]
    )
    assert 403 == refused.status_code
    assert "claimed by eve" in refused.text


# ---------------------------------------------------------------- found in review


def _complete_reply_as_dee(inbox: Served, run_id: str) -> httpx.Response:
    dee = inbox.sign_in("dee")
    page = dee.get(f"/runs/{run_id}/steps/reply")
    return dee.post(
        f"/runs/{run_id}/steps/reply",
        data=reply_form(csrf_of(page.text)),
        files={"e.screenshot": ("reply.png", PNG, "image/png")},
    )


def test_non_ascii_cookies_and_csrf_tokens_are_refused_not_a_crash(inbox: Served) -> None:
    stranger = inbox.client()
    answer = stranger.get("/", headers={"cookie": f"{SESSION_COOKIE}=abc.\u00e9".encode("latin-1")})
    assert answer.status_code in (200, 303)  # the sign-in page, not a 500
    run_id = inbox.start_reply("Q-csrf")
    dee = inbox.sign_in("dee")
    refused = dee.post(f"/runs/{run_id}/steps/reply/claim", data={"csrf": "\u00e9"})
    assert 403 == refused.status_code


def test_evidence_is_seen_and_reused_only_by_those_it_belongs_to(inbox: Served) -> None:
    first = inbox.start_reply("Q-private")
    assert 303 == _complete_reply_as_dee(inbox, first).status_code
    digest = hashlib.sha256(PNG).hexdigest()
    assert 404 == inbox.sign_in("gus").get(f"/evidence/{digest}").status_code  # warehouse
    assert 200 == inbox.sign_in("ann").get(f"/evidence/{digest}").status_code  # a lead
    assert 200 == inbox.sign_in("eve").get(f"/evidence/{digest}").status_code  # holds cs
    second = inbox.start_reply("Q-reuse")
    eve = inbox.sign_in("eve")
    page = eve.get(f"/runs/{second}/steps/reply")
    data = reply_form(csrf_of(page.text))
    data["k.screenshot"] = digest  # dee's file, never uploaded by eve
    refused = eve.post(f"/runs/{second}/steps/reply", data=data)
    assert 422 == refused.status_code  # the evidence is missing: nothing was recorded
    assert [] == inbox.events(second, "task.completed")


def test_a_new_token_ends_the_sessions_of_the_old_one(inbox: Served) -> None:
    old = issue_token(inbox.home, "dee")
    client = inbox.client()
    page = client.get("/signin")
    signed = client.post("/signin", data={"csrf": csrf_of(page.text), "token": old, "next": "/"})
    assert 303 == signed.status_code
    issue_token(inbox.home, "dee")  # replaced, e.g. because it leaked
    assert "/signin" in str(client.get("/").url) or client.get("/").status_code in (303, 401)
