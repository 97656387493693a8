"""The chat UI in a real browser (Debian's Chromium driven by Playwright), against a real
server and PostgreSQL. Screenshots of the main states go to test-artifacts/ui/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from conftest import ARTIFACTS, LiveServer, make_settings
from lakebase_memory.database import EmbeddedPostgres

playwright_api = pytest.importorskip("playwright.sync_api")
Page = playwright_api.Page
expect = playwright_api.expect

SHOTS = ARTIFACTS / "ui"
THREAD = "/api/threads/"  # + a thread id: one thread with all its messages
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip


def chromium_path() -> str | None:
    candidates = [os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", "/usr/bin/chromium-browser"]
    return next((c for c in candidates if c and Path(c).exists()), shutil.which("chromium"))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: CI must install it (apt-get install chromium)")
        pytest.skip("browser tests need Chromium: apt-get install chromium")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=CHROMIUM_FLAGS)  # fmt: skip
        yield browser
        browser.close()


def open_page(browser, server: LiveServer, *, user: str | None = None, **context) -> Page:
    if user:
        context["extra_http_headers"] = {"X-Forwarded-Email": user}
    page = browser.new_context(reduced_motion="reduce", **context).new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(server.url + "/")
    expect(page.locator("#input")).to_be_focused()
    return page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def send(page: Page, text: str) -> None:
    page.locator("#input").fill(text)
    page.locator("#input").press("Enter")


def last_answer(page: Page):
    return page.locator(".msg.assistant .bubble").last


def wait_idle(page: Page) -> None:
    expect(page.locator(".msg.assistant.streaming")).to_have_count(0)
    expect(page.locator("#send")).to_be_enabled()


def test_send_and_see_the_streamed_answer_then_reload(browser, database: str, serve) -> None:
    server = serve(make_settings(database))
    page = open_page(browser, server)
    shot(page, "01-empty")
    send(page, "My name is **Ada**.")
    expect(last_answer(page)).to_contain_text('You said: "My name is Ada.".')
    wait_idle(page)
    send(page, "What is my name?")
    expect(last_answer(page)).to_contain_text("You have sent 2 messages")
    expect(last_answer(page)).to_contain_text("the first was")
    wait_idle(page)
    assert "#/chat/" in page.url
    expect(page.locator(".chat-item")).to_have_count(1)
    expect(page.locator(".chat-item .open")).to_have_text("My name is **Ada**.")
    expect(page.locator("strong").first).to_have_text("Ada")  # markdown rendered
    shot(page, "02-conversation")

    page.reload()
    expect(page.locator(".msg")).to_have_count(4)
    expect(page.locator(".msg.user .bubble").first).to_have_text("My name is **Ada**.")
    expect(page.locator("#chat-title")).to_have_text("My name is **Ada**.")


def test_the_answer_arrives_token_by_token(browser, database: str, serve) -> None:
    server = serve(make_settings(database))
    page = open_page(browser, server)
    send(page, "stream this please")
    answer = page.locator(".msg.assistant").last
    expect(answer).not_to_have_class("msg assistant streaming")
    wait_idle(page)
    # Counted while the answer streams: the DOM attribute each delta updates, on a fresh send.
    page.evaluate("window.__deltas = []")
    page.evaluate("""
        new MutationObserver(() => {
          const s = document.querySelector('.msg.assistant.streaming');
          if (s) window.__deltas.push(Number(s.dataset.deltas));
        }).observe(document.getElementById('messages'),
                   {subtree: true, attributes: true, childList: true, characterData: true});
    """)
    send(page, "and again")
    wait_idle(page)
    seen = page.evaluate("window.__deltas")
    assert max(seen) > 5, seen  # many deltas, each painted as it came


def test_restart_the_server_and_the_chat_is_still_there(browser, database: str, serve) -> None:
    first = serve(make_settings(database))
    page = open_page(browser, first)
    send(page, "Remember the number 42.")
    wait_idle(page)
    url_hash = page.url.split("#", 1)[1]
    first.__exit__()

    second = serve(make_settings(database))
    page.goto(f"{second.url}/#{url_hash}")
    expect(page.locator(".msg.user .bubble")).to_have_text(["Remember the number 42."])
    send(page, "Which number?")
    expect(last_answer(page)).to_contain_text('the first was: "Remember the number 42."')


def test_new_chat_rename_and_delete(browser, database: str, serve) -> None:
    server = serve(make_settings(database))
    page = open_page(browser, server)
    send(page, "first chat")
    wait_idle(page)
    page.locator("#new-chat").click()
    expect(page.locator(".msg")).to_have_count(0)
    send(page, "second chat")
    wait_idle(page)
    items = page.locator(".chat-item .open")
    expect(items).to_have_text(["second chat", "first chat"])  # newest first

    page.locator(".chat-item").nth(1).locator(".rename").click()
    title = page.locator(".chat-item input")
    title.fill("Renamed chat")
    title.press("Enter")
    expect(items).to_have_text(["second chat", "Renamed chat"])
    shot(page, "03-renamed")
    page.reload()
    expect(items).to_have_text(["second chat", "Renamed chat"])

    page.locator(".chat-item").nth(0).locator(".delete").click()  # the open chat
    expect(items).to_have_text(["Renamed chat"])
    expect(page.locator("#chat-title")).to_have_text("New chat")
    page.reload()
    expect(items).to_have_text(["Renamed chat"])
    items.first.click()
    expect(page.locator(".msg.user .bubble")).to_have_text(["first chat"])


def test_votes_are_saved(browser, database: str, serve) -> None:
    server = serve(make_settings(database))
    page = open_page(browser, server)
    send(page, "rate me")
    wait_idle(page)
    page.locator(".vote-up").click()
    expect(page.locator(".vote-up")).to_have_attribute("aria-pressed", "true")
    page.reload()
    expect(page.locator(".vote-up")).to_have_attribute("aria-pressed", "true")
    page.locator(".vote-down").click()
    expect(page.locator(".vote-down")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".vote-up")).to_have_attribute("aria-pressed", "false")


def test_a_fresh_answer_is_voted_on_without_reading_the_thread_back(
    browser, database: str, serve
) -> None:
    server = serve(make_settings(database))
    page = open_page(browser, server)
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.method, urlsplit(r.url).path)))
    send(page, "first question")
    wait_idle(page)
    send(page, "second question")
    wait_idle(page)
    expect(page.locator("#chat-title")).to_have_text("first question")
    # The answers' ids came with their streams: no read of the whole thread after an answer.
    reads = [path for method, path in requests if method == "GET" and path.startswith(THREAD)]
    assert reads == [], reads
    assert ("POST", "/responses") in requests and ("GET", "/api/threads") in requests

    answers = page.locator(".msg.assistant")
    expect(answers.locator(".vote-up")).to_have_count(2)
    answers.nth(1).locator(".vote-up").click()
    expect(answers.nth(1).locator(".vote-up")).to_have_attribute("aria-pressed", "true")
    answers.nth(0).locator(".vote-down").click()
    expect(answers.nth(0).locator(".vote-down")).to_have_attribute("aria-pressed", "true")

    thread_id = unquote(page.url.split("#/chat/", 1)[1])
    with server.client() as client:
        saved = client.get(f"{THREAD}{quote(thread_id, safe='')}").json()["messages"]
    assert [(m["role"], m["vote"]) for m in saved] == [
        ("user", None), ("assistant", False), ("user", None), ("assistant", True)
    ]  # fmt: skip
    votes = [path for method, path in requests if method == "PUT"]
    assert votes == [
        f"{THREAD}{thread_id}/messages/{saved[3]['id']}/vote",
        f"{THREAD}{thread_id}/messages/{saved[1]['id']}/vote",
    ]
    page.reload()
    expect(answers.nth(1).locator(".vote-up")).to_have_attribute("aria-pressed", "true")
    expect(answers.nth(0).locator(".vote-down")).to_have_attribute("aria-pressed", "true")


def test_two_users_cannot_see_each_others_chats(browser, database: str, serve) -> None:
    server = serve(make_settings(database, trust_forwarded_identity=True))
    ada = open_page(browser, server, user="ada@example.com")
    send(ada, "Ada's private plan")
    wait_idle(ada)
    ada_hash = ada.url.split("#", 1)[1]
    bob = open_page(browser, server, user="bob@example.com")
    expect(bob.locator("#whoami")).to_have_text("bob@example.com")
    expect(bob.locator(".chat-item")).to_have_count(0)
    send(bob, "Bob's note")
    wait_idle(bob)
    expect(bob.locator(".chat-item .open")).to_have_text(["Bob's note"])
    bob.goto(f"{server.url}/#{ada_hash}")  # Bob opens Ada's chat link
    expect(bob.locator(".chat-item .open")).to_have_text(["Bob's note"])
    expect(bob.locator("#chat-title")).to_have_text("New chat")
    expect(bob.get_by_text("Ada's private plan")).to_have_count(0)
    shot(bob, "04-second-user")
    ada.reload()
    expect(ada.locator(".chat-item .open")).to_have_text(["Ada's private plan"])


def test_model_and_user_text_cannot_inject_script(browser, database: str, serve) -> None:
    server = serve(make_settings(database))
    page = open_page(browser, server)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    attack = "<img src=x onerror=alert(1)> <script>alert(2)</script> [link](javascript:alert(3))"
    send(page, attack)
    wait_idle(page)
    expect(page.locator(".msg.user .bubble")).to_have_text(attack)  # shown as text
    answer = last_answer(page)
    expect(answer).to_contain_text("You said")
    assert answer.locator("script").count() == 0
    assert answer.locator("img[onerror]").count() == 0
    assert "javascript:" not in (answer.inner_html())
    links = answer.locator("a", has_text="link")
    if links.count():  # whatever survived sanitising is inert
        links.first.click()
    assert dialogs == []


def test_database_down_shows_an_error_with_retry(browser, scratch_dir: Path, serve) -> None:
    embedded = EmbeddedPostgres(scratch_dir / "ui-outage")
    conninfo = embedded.start()
    try:
        server = serve(make_settings(conninfo, db_pool_timeout=1.5))
        page = open_page(browser, server)
        send(page, "before")
        wait_idle(page)
        embedded.stop()
        send(page, "during the outage")
        error = page.locator(".msg .error")
        expect(error).to_contain_text("memory database is not available", timeout=20_000)
        expect(error.locator(".retry")).to_be_visible()
        shot(page, "05-database-down")
        embedded.start()
        error.locator(".retry").click()
        expect(last_answer(page)).to_contain_text('You said: "during the outage"', timeout=20_000)
        wait_idle(page)
        expect(page.locator(".msg.user .bubble")).to_have_text(["before", "during the outage"])
    finally:
        embedded.stop()


def test_shift_enter_adds_a_line_and_the_phone_layout(browser, database: str, serve) -> None:
    server = serve(make_settings(database))
    page = open_page(browser, server, viewport={"width": 390, "height": 780}, is_mobile=True,
                     has_touch=True)  # fmt: skip
    box = page.locator("#input")
    box.type("line one")
    box.press("Shift+Enter")
    box.type("line two")
    expect(box).to_have_value("line one\nline two")
    expect(page.locator(".msg")).to_have_count(0)
    box.press("Enter")
    expect(page.locator(".msg.user .bubble")).to_have_text("line one\nline two")
    wait_idle(page)
    expect(page.locator("#sidebar")).not_to_be_in_viewport()
    shot(page, "06-phone")
    page.locator("#toggle-sidebar").click()
    expect(page.locator("#sidebar")).to_be_in_viewport()
    expect(page.locator(".chat-item .open")).to_have_text(["line one line two"])
    shot(page, "07-phone-sidebar")
    page.locator(".chat-item .open").first.click()
    expect(page.locator("#sidebar")).not_to_be_in_viewport()
