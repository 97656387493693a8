"""The chat UI's answers run in the background: a reload reattaches to the running answer, a
cut stream is resumed where it stopped, and Stop cancels the answer. In a real browser against
a real server and PostgreSQL (the fixtures of test_ui)."""

from __future__ import annotations

from conftest import make_settings
from test_ui import browser, expect, last_answer, open_page, send, shot, wait_idle

__all__ = ["browser"]  # the fixture, imported for pytest

# Slow enough to act mid-answer: the echo model's reply to a new message is about 20 words.
SLOW = {"echo_delay_seconds": 0.25}


def test_a_reload_mid_answer_reattaches_and_shows_the_rest(browser, database: str, serve) -> None:
    server = serve(make_settings(database, **SLOW))
    page = open_page(browser, server)
    send(page, "tell me slowly")
    expect(last_answer(page)).to_contain_text("You said")  # a few words in
    assert "#/chat/" in page.url
    page.reload()
    # The question is shown again, and the answer continues from its first word to its end.
    expect(page.locator(".msg.user .bubble")).to_have_text(["tell me slowly"])
    expect(page.locator(".msg.assistant.streaming")).to_have_count(1)
    expect(page.locator("#stop")).to_be_visible()
    expect(page.locator(".msg.assistant.streaming")).to_have_count(0, timeout=15_000)
    wait_idle(page)
    expect(last_answer(page)).to_contain_text('You said: "tell me slowly".')
    expect(page.locator(".msg.assistant")).to_have_count(1)
    shot(page, "20-reattached")
    page.reload()  # finished: the thread as stored, nothing to reattach to
    expect(page.locator(".msg")).to_have_count(2)
    expect(page.locator(".msg.assistant.streaming")).to_have_count(0)


def test_a_cut_stream_is_resumed_where_it_stopped(browser, database: str, serve) -> None:
    server = serve(make_settings(database, **SLOW))
    page = open_page(browser, server)
    # The first stream of the answer is cut after its first 3 KB or so: the page must resume
    # it with GET /responses/{id}?stream=true&starting_after=N, once, and lose nothing.
    resumed: list[str] = []
    page.on("request", lambda r: resumed.append(r.url) if "starting_after=" in r.url else None)
    page.evaluate("""
        const realFetch = window.fetch;
        window.fetch = async (url, options) => {
          const response = await realFetch(url, options);
          if (url !== '/responses') return response;
          const reader = response.body.getReader();
          let events = 0;
          const cut = new ReadableStream({
            async pull(controller) {
              const { value, done } = await reader.read();
              if (done) { controller.close(); return; }
              controller.enqueue(value);
              events += new TextDecoder().decode(value).split('\\n\\n').length - 1;
              if (events >= 8) { reader.cancel(); controller.error(new TypeError('cut')); }
            },
          });
          return new Response(cut, { status: response.status, headers: response.headers });
        };
    """)
    send(page, "do not lose a word")
    expect(page.locator(".msg.assistant.streaming")).to_have_count(0, timeout=15_000)
    wait_idle(page)
    expect(last_answer(page)).to_contain_text('You said: "do not lose a word".')
    assert len(resumed) == 1, resumed
    # Each word once: replayed events the page had already seen are skipped.
    text = last_answer(page).inner_text()
    assert text.count("You said") == 1, text
    page.reload()
    expect(last_answer(page)).to_have_text(text)


def test_stop_cancels_the_answer_and_keeps_what_was_said(browser, database: str, serve) -> None:
    server = serve(make_settings(database, **SLOW))
    page = open_page(browser, server)
    send(page, "a long answer I will stop")
    expect(last_answer(page)).to_contain_text("You said")
    page.locator("#stop").click()
    wait_idle(page)
    expect(page.locator(".msg.assistant .stopped")).to_have_text("Stopped.")
    expect(page.locator("#stop")).to_be_hidden()
    partial = last_answer(page).inner_text()
    assert "You said" in partial and 'a long answer I will stop".' not in partial, partial
    # The thread is free again: the next message is answered.
    send(page, "and now?")
    expect(last_answer(page)).to_contain_text("and now?", timeout=15_000)
    wait_idle(page)
