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


# -- long-term memory: the panel and the agent's tool calls -------------------------------


def put_memory(server: LiveServer, key: str, value: dict, user: str | None = None) -> None:
    headers = {"X-Forwarded-Email": user} if user else {}
    with server.client(headers=headers) as client:
        response = client.put(f"/api/memories/{quote(key, safe='')}", json={"value": value})
        assert response.status_code == 200, response.text


def open_memory_panel(page: Page) -> None:
    """Open the panel unless it is (it stays open across reloads)."""
    if page.locator("#toggle-memory").get_attribute("aria-expanded") != "true":
        page.locator("#toggle-memory").click()
    expect(page.locator("#memory-panel")).to_be_visible()
    expect(page.locator("#toggle-memory")).to_have_attribute("aria-expanded", "true")


def test_the_memory_panel_lists_searches_and_forgets(browser, database: str, serve) -> None:
    server = serve(make_settings(database))
    put_memory(server, "favourite_colour", {"fact": "my favourite colour is teal"})
    put_memory(server, "pet", {"name": "Blue Moon", "kind": "cat"})
    attack = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    put_memory(server, "hostile/key <b>", {"fact": attack})
    page = open_page(browser, server)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    expect(page.locator("#memory-panel")).to_be_hidden()
    open_memory_panel(page)
    items = page.locator(".memory-item")
    expect(items.locator(".memory-key")).to_have_text(
        ["hostile/key <b>", "pet", "favourite_colour"]
    )
    expect(items.locator(".memory-value")).to_have_text(
        [attack, "kind: cat\nname: Blue Moon", "my favourite colour is teal"]  # jsonb's order
    )
    panel = page.locator("#memory-panel")
    assert panel.locator("img, script, b").count() == 0  # shown as text
    shot(page, "08-memory-panel")

    page.locator("#memory-search").fill("teal colour")
    expect(items.locator(".memory-key")).to_have_text(["favourite_colour"])
    page.locator("#memory-search").fill("giraffe")
    expect(items).to_have_count(0)
    expect(page.locator("#memory-empty")).to_contain_text("No memory matches")
    page.locator("#memory-search").fill("")
    expect(items).to_have_count(3)

    dialogs.clear()
    items.filter(has_text="Blue Moon").locator(".forget").click()
    expect(items.locator(".memory-key")).to_have_text(["hostile/key <b>", "favourite_colour"])
    assert dialogs == ['Forget "pet"?']  # asked first (and accepted by open_page)
    with server.client() as client:
        assert client.get("/api/memories/pet").status_code == 404
    page.reload()
    open_memory_panel(page)
    expect(items.locator(".memory-key")).to_have_text(["hostile/key <b>", "favourite_colour"])

    page.locator("#forget-all").click()
    expect(items).to_have_count(0)
    expect(page.locator("#memory-empty")).to_contain_text("Nothing yet")
    expect(page.locator("#forget-all")).to_be_hidden()
    with server.client() as client:
        assert client.get("/api/memories").json()["memories"] == []
    page.locator("#close-memory").click()
    expect(page.locator("#memory-panel")).to_be_hidden()
    # Only the two confirmations: no alert of the hostile memory ever ran.
    assert dialogs == [
        'Forget "pet"?',
        "Forget everything I remember about you? This cannot be undone.",
    ]


def test_each_user_sees_only_their_own_memories(browser, database: str, serve) -> None:
    server = serve(make_settings(database, trust_forwarded_identity=True))
    put_memory(server, "ada_fact", {"fact": "Ada's secret"}, user="ada@example.com")
    put_memory(server, "bob_fact", {"fact": "Bob's note"}, user="bob@example.com")
    bob = open_page(browser, server, user="bob@example.com")
    open_memory_panel(bob)
    expect(bob.locator(".memory-item .memory-value")).to_have_text(["Bob's note"])
    expect(bob.get_by_text("Ada's secret")).to_have_count(0)
    bob.locator(".memory-item .forget").click()
    expect(bob.locator(".memory-item")).to_have_count(0)
    ada = open_page(browser, server, user="ada@example.com")
    open_memory_panel(ada)
    expect(ada.locator(".memory-item .memory-value")).to_have_text(["Ada's secret"])


def test_a_remembered_fact_shows_its_tool_call_and_lands_in_the_panel(
    browser, database: str, serve
) -> None:
    server = serve(make_settings(database))
    page = open_page(browser, server)
    open_memory_panel(page)
    expect(page.locator("#memory-empty")).to_contain_text("Nothing yet")
    send(page, "Remember that my favourite colour is blue")
    wait_idle(page)
    answer = page.locator(".msg.assistant").last
    call = answer.locator("details.tool-call")
    expect(call).to_have_count(1)
    expect(call.locator("summary .tool-name")).to_have_text("save_user_memory")
    expect(call).not_to_have_attribute("open", "")  # collapsed
    expect(call.locator(".tool-args")).to_be_hidden()
    expect(last_answer(page)).to_contain_text("Tool save_user_memory answered")
    # The panel was read again after the answer: the agent's memory is in it.
    expect(page.locator(".memory-item .memory-key")).to_have_text(["my_favourite_colour_is_blue"])
    expect(page.locator(".memory-item .memory-value")).to_have_text(["my favourite colour is blue"])

    call.locator("summary").click()
    expect(call.locator(".tool-args")).to_be_visible()
    expect(call.locator(".tool-args")).to_contain_text(
        '"memory_key": "my_favourite_colour_is_blue"'
    )
    expect(call.locator(".tool-output")).to_have_text(
        "Successfully saved memory 'my_favourite_colour_is_blue' for user."
    )
    shot(page, "09-tool-call")

    # From the thread's history: the same collapsed call, with its arguments and result.
    page.reload()
    expect(page.locator("#memory-panel")).to_be_visible()  # it stays open across reloads
    expect(page.locator(".memory-item .memory-key")).to_have_text(["my_favourite_colour_is_blue"])
    expect(page.locator(".msg")).to_have_count(2)
    call = page.locator(".msg.assistant details.tool-call")
    expect(call).to_have_count(1)
    expect(call).not_to_have_attribute("open", "")
    expect(call.locator("summary .tool-name")).to_have_text("save_user_memory")
    call.locator("summary").click()
    expect(call.locator(".tool-args")).to_contain_text("my_favourite_colour_is_blue")
    expect(call.locator(".tool-output")).to_contain_text("Successfully saved memory")
    expect(page.locator(".msg.assistant .bubble")).to_have_count(1)
    expect(page.locator(".msg.assistant .vote-up")).to_have_count(1)

    # A new chat recalls it through the memory tool.
    page.locator("#new-chat").click()
    send(page, "Recall my favourite colour")
    wait_idle(page)
    recall = page.locator(".msg.assistant details.tool-call")
    expect(recall.locator("summary .tool-name")).to_have_text("get_user_memory")
    expect(last_answer(page)).to_contain_text("my favourite colour is blue")

    # Forgotten in the panel: the agent no longer finds it.
    expect(page.locator("#memory-panel")).to_be_visible()  # still open in the new chat
    page.locator(".memory-item .forget").click()
    expect(page.locator(".memory-item")).to_have_count(0)
    page.locator("#new-chat").click()
    send(page, "Recall my favourite colour")
    expect(last_answer(page)).to_contain_text("No memories found")


def test_the_memory_panel_on_a_phone(browser, database: str, serve) -> None:
    server = serve(make_settings(database))
    put_memory(server, "answers", {"fact": "prefers short answers"})
    page = open_page(browser, server, viewport={"width": 390, "height": 780}, is_mobile=True,
                     has_touch=True)  # fmt: skip
    open_memory_panel(page)
    expect(page.locator("#memory-panel")).to_be_in_viewport()
    expect(page.locator(".memory-item .memory-value")).to_have_text(["prefers short answers"])
    shot(page, "10-phone-memory")
    page.reload()  # on a phone it starts closed, though it was open: it would cover the chat
    expect(page.locator("#input")).to_be_focused()
    expect(page.locator("#memory-panel")).to_be_hidden()
    open_memory_panel(page)
    page.locator("#scrim").click(position={"x": 20, "y": 400})  # beside the panel: closes it
    expect(page.locator("#memory-panel")).to_be_hidden()
    expect(page.locator("#scrim")).to_be_hidden()


def test_tool_arguments_and_results_cannot_inject_script(browser, database: str, serve) -> None:
    server = serve(make_settings(database))
    page = open_page(browser, server)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    send(page, "Remember that <img src=x onerror=alert(1)><script>alert(2)</script>")
    wait_idle(page)
    call = page.locator("details.tool-call")
    call.locator("summary").click()
    expect(call.locator(".tool-args")).to_contain_text("<img src=x onerror=alert(1)>")
    page.reload()
    page.locator("details.tool-call summary").click()
    expect(page.locator(".tool-args")).to_contain_text("<script>alert(2)</script>")
    assert page.locator("details.tool-call img, details.tool-call script").count() == 0
    assert dialogs == []
