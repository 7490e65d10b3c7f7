"""The inbox in a real browser: Debian's Chromium driven by Playwright, never a downloaded one.

Screenshots go to test-artifacts/ (gitignored). Without /usr/bin/chromium the tests skip,
saying why, unless STOREOPS_REQUIRE_BROWSER=1, where they fail (CI must not skip them).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import ROOT
from tests.web.conftest import PNG, Served, password_of

if TYPE_CHECKING:  # Playwright itself is imported only once a browser is known to exist
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        why = (
            f"no browser at {CHROMIUM} (apt-get install chromium); Playwright must not download one"
        )
        if os.environ.get("STOREOPS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"STOREOPS_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # the Python package is a dev dependency
        if os.environ.get("STOREOPS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"STOREOPS_REQUIRE_BROWSER=1 but Playwright is not installed: {exc}")
        pytest.skip(f"Playwright is not installed ({exc}); pip install playwright")

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _sign_in(page: Page, url: str, person: str) -> None:
    page.goto(f"{url}/")
    assert "/signin" in page.url  # pages need a sign-in first
    page.fill("#signin-password input[name=person]", person)
    page.fill("#signin-password input[name=password]", password_of(person))
    page.click("#signin-password button[type=submit]")
    page.wait_for_selector("header .who")


def test_a_cs_agent_completes_todays_task_with_a_value_and_a_file(
    inbox: Served, browser: Browser
) -> None:
    run_id = inbox.start_reply("Q-web")
    context = browser.new_context(viewport={"width": 1100, "height": 1400})
    page = context.new_page()
    try:
        _sign_in(page, inbox.url, "dee")
        task = page.locator(f'li.task[data-run="{run_id}"] a.task-title')
        assert "Reply to the inquiry · Q-web" == task.inner_text()  # title · about
        page.screenshot(path=str(ARTIFACTS / "inbox-today-dee.png"), full_page=True)
        task.click()
        page.wait_for_selector("form.task-form")
        assert "Reply to inquiry" in page.locator("section.instructions").inner_text()
        page.check('input[name="c.1"][value="done"]')
        page.check('input[name="c.2"][value="done"]')
        page.fill('textarea[name="f.answer"]', "您的包裹今天已发出 / shipped today")
        page.select_option('select[name="f.channel"]', "chat")
        page.fill('input[name="f.minutes"]', "7")
        page.set_input_files(
            'input[name="e.screenshot"]',
            files={"name": "reply.png", "mimeType": "image/png", "buffer": PNG},
        )
        page.screenshot(path=str(ARTIFACTS / "inbox-task-filled.png"), full_page=True)
        page.dblclick("#complete")  # a double click still records one completion
        page.wait_for_selector("p.notice.ok")
        assert "Recorded: reply in run" in page.locator("p.notice.ok").inner_text()
        page.screenshot(path=str(ARTIFACTS / "inbox-done.png"), full_page=True)
        [done] = inbox.events(run_id, "task.completed")
        digest = hashlib.sha256(PNG).hexdigest()
        assert ("dee", "chat", 7) == (
            done["actor"],
            done["fields"]["channel"],
            done["fields"]["minutes"],
        )
        assert "您的包裹今天已发出 / shipped today" == done["fields"]["answer"]
        assert {"screenshot": [digest]} == done["evidence"]
        assert (inbox.home / "evidence" / digest[:2] / digest).is_file()
        page.goto(f"{inbox.url}/runs/{run_id}")
        assert "Ledger chain intact" in page.locator("#chain").inner_text()
        assert 1 == page.locator('g.node.current[data-state="review"]').count()
        page.screenshot(path=str(ARTIFACTS / "inbox-run.png"), full_page=True)
    finally:
        context.close()


def test_a_warehouse_person_is_refused_the_cs_task(inbox: Served, browser: Browser) -> None:
    run_id = inbox.start_reply("Q-wh")
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    try:
        _sign_in(page, inbox.url, "gus")  # gus: warehouse only, reads Chinese
        assert "今日任务" in page.locator("h1").inner_text()
        assert 0 == page.locator(f'li.task[data-run="{run_id}"]').count()
        page.goto(f"{inbox.url}/runs/{run_id}/steps/reply")
        assert "该步骤属于 客服" in page.locator("#not-yours").inner_text()
        assert 0 == page.locator("form.task-form").count()
        page.screenshot(path=str(ARTIFACTS / "inbox-refused-view.png"), full_page=True)
        # Trying anyway (a hand-made form with the page's own CSRF token): the engine
        # refuses, the page says so, and the ledger records it.
        page.evaluate(
            """([action]) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = action;
                const add = (name, value) => {
                    const input = document.createElement("input");
                    input.type = "hidden"; input.name = name; input.value = value;
                    form.appendChild(input);
                };
                add("csrf", document.querySelector("form.signout input[name=csrf]").value);
                add("action", "complete");
                add("f.answer", "not mine");
                document.body.appendChild(form);
                form.submit();
            }""",
            [f"/runs/{run_id}/steps/reply"],
        )
        page.wait_for_selector("section.message")
        assert "操作被拒绝" in page.locator("section.message h1").inner_text()
        assert "gus may not act on step 'reply'" in page.locator("section.message").inner_text()
        page.screenshot(path=str(ARTIFACTS / "inbox-refused.png"), full_page=True)
        [refused] = inbox.events(run_id, "task.refused")
        assert ("gus", "not_allowed") == (refused["actor"], refused["reason"])
        assert [] == inbox.events(run_id, "task.completed")
    finally:
        context.close()


def test_a_lead_sees_the_analytics_charts(inbox: Served, browser: Browser) -> None:
    """A lead's analytics page draws its charts (server-side SVG) from finished runs in the
    ledger; others are refused."""
    for number in range(3):  # three inquiries answered and approved, by the completion path
        run_id = inbox.start_reply(f"Q-analytics-{number}")
        inbox.engine.complete(
            run_id,
            "reply",
            actor="dee",
            fields={"answer": "已发货 / shipped", "channel": "chat"},
            evidence={"screenshot": [hashlib.sha256(PNG).hexdigest()]},
            checklist={0: "done"},
        )
        inbox.engine.complete(run_id, "review", actor="ann")
        assert "succeeded" == inbox.engine.ledger.get_run(run_id).status
    lead = browser.new_context(viewport={"width": 1100, "height": 1400})
    agent = browser.new_context()
    try:
        page = lead.new_page()
        _sign_in(page, inbox.url, "ann")  # a lead
        page.goto(f"{inbox.url}/analytics")
        page.wait_for_selector("figure.chart svg")
        assert page.locator("figure.chart svg").count() >= 3  # cycle, steps, on time
        assert "Answer a customer inquiry" in page.locator("main").inner_text()
        page.screenshot(path=str(ARTIFACTS / "inbox-analytics.png"), full_page=True)
        other = agent.new_page()
        _sign_in(other, inbox.url, "dee")  # a CS agent, not a lead
        answer = other.goto(f"{inbox.url}/analytics")
        assert answer is not None
        assert 403 == answer.status
    finally:
        lead.close()
        agent.close()
