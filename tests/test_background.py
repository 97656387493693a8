"""Background responses (issue 15): stored turns polled, replayed, resumed, cancelled,
recovered after a crash, kept per user and deleted by retention."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from app_process import App
from conftest import LiveServer, answer_text, make_settings, sse_events

USER = {"X-Forwarded-Email": "ada@example.com"}
OTHER = {"X-Forwarded-Email": "bob@example.com"}


def background(client: httpx.Client, text: str, thread_id: str, **extra: object) -> dict:
    body = {"input": text, "background": True, "custom_inputs": {"thread_id": thread_id}, **extra}
    reply = client.post("/responses", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def wait_status(
    client: httpx.Client, response_id: str, statuses: set[str], timeout: float = 20
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        reply = client.get(f"/responses/{response_id}")
        assert reply.status_code == 200, reply.text
        if reply.json()["status"] in statuses:
            return reply.json()
        assert time.monotonic() < deadline, reply.json()
        time.sleep(0.05)


def replay(client: httpx.Client, response_id: str, **params: object) -> list[dict | str]:
    reply = client.get(f"/responses/{response_id}", params={"stream": "true", **params})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    return sse_events(reply)


def first_events(client: httpx.Client, method: str, url: str, count: int, **kw: object) -> list:
    """The first `count` events of a stream; then the connection is dropped."""
    events: list[dict] = []
    with client.stream(method, url, **kw) as stream:  # type: ignore[arg-type]
        for line in stream.iter_lines():
            if line.startswith("data: {"):
                events.append(json.loads(line[len("data: ") :]))
                if len(events) == count:
                    break
    return events


def test_a_background_turn_is_polled_to_completion(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(make_settings(database, echo_delay_seconds=0.02))
    with server.client() as client:
        began = time.monotonic()
        started = background(client, "My colour is teal.", "bg-poll")
        answered_in = time.monotonic() - began
        assert started["id"].startswith("resp_") and started["object"] == "response"
        assert started["status"] in ("queued", "in_progress") and started["output"] == []
        assert started["custom_outputs"] == {"thread_id": "bg-poll"}
        assert started["background"] is True and started["error"] is None
        done = wait_status(client, started["id"], {"completed"})
        finished_in = time.monotonic() - began
        assert done["id"] == started["id"]
        assert 'You said: "My colour is teal."' in answer_text(done)
        # The answer is in the thread, as for a direct turn; nothing runs on it any more.
        thread = client.get("/api/threads/bg-poll").json()
        assert [m["role"] for m in thread["messages"]] == ["user", "assistant"]
        assert thread["active_response"] is None
        began = time.monotonic()
        direct = client.post(
            "/responses", json={"input": "Again.", "custom_inputs": {"thread_id": "bg-poll"}}
        )
        direct_in = time.monotonic() - began
        assert direct.status_code == 200 and direct.json()["status"] == "completed"
    print(f"\nbackground: answered in {answered_in * 1000:.0f} ms, completed (polled) in "
          f"{finished_in * 1000:.0f} ms; direct turn {direct_in * 1000:.0f} ms")  # fmt: skip
    assert answered_in < direct_in  # it answers before the turn is done


def test_events_are_stored_in_batches_with_the_stored_id(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(make_settings(database))
    runner = server.app.state.runtime.responses.runner
    with server.client() as client:
        started = background(client, "word " * 40, "bg-batch")
        wait_status(client, started["id"], {"completed"})
        events = replay(client, started["id"])
    assert events[-1] == "[DONE]"
    stored = [e for e in events if isinstance(e, dict)]
    assert [e["sequence_number"] for e in stored] == list(range(len(stored)))
    assert stored[-1]["type"] == "response.completed"
    assert {e["response"]["id"] for e in stored if "response" in e} == {started["id"]}
    assert len(stored) > 40  # a delta per word
    print(f"\n{runner.events} events in {runner.batches} transactions")
    assert runner.events / runner.batches >= 5  # not one INSERT per token


def test_a_dropped_stream_resumes_with_exactly_the_missing_events(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(make_settings(database, echo_delay_seconds=0.05))
    with server.client() as client:
        body = {"input": "tell me something long enough", "background": True, "stream": True,
                "custom_inputs": {"thread_id": "bg-resume"}}  # fmt: skip
        head = first_events(client, "POST", "/responses", 6, json=body)
        assert [e["sequence_number"] for e in head] == list(range(6))
        response_id = head[0]["response"]["id"]
        assert head[0]["type"] == "response.created" and response_id.startswith("resp_")
        rest = replay(client, response_id, starting_after=5)  # live: the turn still runs
        full = replay(client, response_id)
    assert rest[-1] == "[DONE]" and full[-1] == "[DONE]"
    assert rest[0]["sequence_number"] == 6  # type: ignore[index]
    assert full[:6] == head and full[6:] == rest
    assert full[-2]["type"] == "response.completed"  # type: ignore[index]
    # The same shapes as a direct stream of the same kind of turn.
    with server.client() as client:
        direct = client.post(
            "/responses",
            json={**body, "background": False, "custom_inputs": {"thread_id": "direct"}},
        )
    direct_types = [e["type"] for e in sse_events(direct) if isinstance(e, dict)]
    assert [e["type"] for e in full if isinstance(e, dict)] == direct_types


def stored_events(database: str, response_id: str) -> list[dict]:
    """The events stored so far, read from the database (without following the stream)."""
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT event FROM ai_chatbot.response_events WHERE response_id = %s "
            "ORDER BY sequence_number",
            (response_id,),
        ).fetchall()
    return [row[0] for row in rows]


def wait_deltas(database: str, response_id: str, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while sum(e["type"] == "response.output_text.delta"
              for e in stored_events(database, response_id)) < count:  # fmt: skip
        assert time.monotonic() < deadline, stored_events(database, response_id)
        time.sleep(0.05)


def test_cancel_mid_answer_keeps_what_was_said_and_frees_the_thread(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(make_settings(database, echo_delay_seconds=0.2))
    with server.client() as client, server.client() as other:
        started = background(client, "a question to stop", "bg-cancel")
        url = f"/responses/{started['id']}"
        streamed: list[dict | str] = []
        watcher = threading.Thread(target=lambda: streamed.extend(replay(other, started["id"])))
        watcher.start()
        wait_deltas(database, started["id"], 2)
        running = client.get("/api/threads/bg-cancel").json()["active_response"]
        assert running == {
            "id": started["id"],
            "status": "in_progress",
            "input": [{"type": "message", "role": "user", "content": "a question to stop"}],
        }
        cancelled = client.post(f"{url}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert body["status"] == "cancelled" and body["id"] == started["id"]
        partial = body["output"][0]
        said = partial["content"][0]["text"]
        assert partial["status"] == "incomplete" and said
        assert 'You said: "a question to stop".'.startswith(said.rstrip())
        watcher.join(timeout=10)
        assert streamed[-1] == "[DONE]"
        assert streamed[-2]["type"] == "response.cancelled"  # type: ignore[index]
        assert streamed[-2]["response"]["status"] == "cancelled"  # type: ignore[index]
        # Cancelling it again answers it again; the thread is free at once (no 409).
        assert client.post(f"{url}/cancel").json()["status"] == "cancelled"
        assert client.get(url).json()["status"] == "cancelled"
        thread = client.get("/api/threads/bg-cancel").json()
        assert thread["active_response"] is None
        assert [m["content"] for m in thread["messages"]][:1] == ["a question to stop"]
        server.app.state.runtime.model.delay_seconds = 0
        again = client.post(
            "/responses", json={"input": "and now?", "custom_inputs": {"thread_id": "bg-cancel"}}
        )
        assert again.status_code == 200, again.text
        users = [m["content"] for m in client.get("/api/threads/bg-cancel").json()["messages"]
                 if m["role"] == "user"]  # fmt: skip
        assert users == ["a question to stop", "and now?"]


def test_errors_say_what_to_do(database: str, serve: Callable[..., LiveServer]) -> None:
    server = serve(make_settings(database, echo_delay_seconds=0.1))
    with server.client() as client:
        unknown = client.get("/responses/resp_nope")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "response_not_found"
        assert '"background": true' in unknown.json()["error"]["message"]
        assert client.get("/responses/resp_nope", params={"stream": "true"}).status_code == 404
        assert client.post("/responses/resp_nope/cancel").status_code == 404
        started = background(client, "first", "bg-errors")
        # The thread's lease is taken before anything is stored: a second turn is refused.
        busy = client.post(
            "/responses",
            json={
                "input": "second",
                "background": True,
                "custom_inputs": {"thread_id": "bg-errors"},
            },
        )
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "thread_busy"
        # Validation comes first, with its usual status.
        empty = client.post("/responses", json={"input": "", "background": True})
        assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_request"
        url = f"/responses/{started['id']}"
        for bad in ("abc", "-2", "1.5"):
            reply = client.get(url, params={"stream": "true", "starting_after": bad})
            assert reply.status_code == 422, bad
            assert reply.json()["error"]["code"] == "invalid_request"
            assert reply.json()["error"]["details"][0]["field"] == "query.starting_after"
        plain = client.get(url, params={"starting_after": 3})
        assert plain.status_code == 400 and plain.json()["error"]["code"] == "stream_required"
        assert "stream=true" in plain.json()["error"]["message"]
        wait_status(client, started["id"], {"completed"})
        finished = client.post(f"{url}/cancel")
        assert finished.status_code == 409
        error = finished.json()["error"]
        assert error["code"] == "response_finished" and error["details"] == {"status": "completed"}
        assert "already completed" in error["message"]
        # Past the end of a finished response: nothing to replay, the stream just ends.
        assert replay(client, started["id"], starting_after=10_000) == ["[DONE]"]


def test_another_users_response_is_not_found(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    settings = make_settings(database, trust_forwarded_identity=True, echo_delay_seconds=0.1)
    server = serve(settings)
    with server.client(headers=USER) as ada, server.client(headers=OTHER) as bob:
        started = background(ada, "mine", "bg-private")
        url = f"/responses/{started['id']}"
        for reply in (bob.get(url), bob.get(url, params={"stream": "true"}),
                      bob.post(f"{url}/cancel")):  # fmt: skip
            assert reply.status_code == 404, reply.text
            assert reply.json()["error"]["code"] == "response_not_found"
        assert ada.get(url).status_code == 200
        assert bob.get("/api/threads/bg-private").status_code == 404
        wait_status(ada, started["id"], {"completed"})
        assert ada.get(url).json()["status"] == "completed"  # bob's cancel did nothing


def test_retention_and_erasure_delete_finished_responses(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    # 0.0003 h is about a second: a finished response is gone at the next pass after it.
    settings = make_settings(database, response_retention_hours=0.0003,
                             response_sweep_seconds=0.2)  # fmt: skip
    server = serve(settings)
    maintenance = server.app.state.runtime.responses.maintenance
    with server.client() as client:
        old = background(client, "to be forgotten", "bg-retention")
        wait_status(client, old["id"], {"completed"})
        assert stored_events(database, old["id"])
        deadline = time.monotonic() + 15
        while client.get(f"/responses/{old['id']}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert stored_events(database, old["id"]) == []  # its events went with it
        assert maintenance.sweeps > 1
    server2 = serve(make_settings(database))
    with server2.client() as client:
        kept = background(client, "erase me", "bg-erase")
        wait_status(client, kept["id"], {"completed"})
        erased = client.delete("/api/threads", params={"confirm": "all"}).json()
        assert erased["deleted"]["responses"] == 1
        assert client.get(f"/responses/{kept['id']}").status_code == 404


def test_deleting_a_thread_deletes_its_responses(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(make_settings(database))
    with server.client() as client:
        started = background(client, "short-lived", "bg-delete")
        wait_status(client, started["id"], {"completed"})
        assert client.delete("/api/threads/bg-delete").status_code == 204
        assert client.get(f"/responses/{started['id']}").status_code == 404


def read_stream(app: App, response_id: str, into: list[dict | str], **params: object) -> None:
    with app.client() as client:
        reply = client.get(f"/responses/{response_id}", params={"stream": "true", **params},
                           timeout=60)  # fmt: skip
        into.extend(sse_events(reply))


@pytest.mark.slow
def test_another_process_resumes_and_a_killed_owner_ends_failed(
    scratch_dir: Path, database: str
) -> None:
    """Two app processes on one database: either serves the other's response live; when the
    process running one is killed, the other marks it failed within lease + sweep."""
    env = {"DATABASE_URL": database, "ECHO_DELAY_SECONDS": "0.05",
           "RESPONSE_LEASE_SECONDS": "2", "RESPONSE_SWEEP_SECONDS": "0.5",
           "RESPONSE_POLL_SECONDS": "0.1"}  # fmt: skip
    owner = App(scratch_dir, scratch_dir / "unused", **env)
    other = App(scratch_dir, scratch_dir / "unused", **env)
    try:
        owner.wait_ready()
        other.wait_ready()
        # Resume, served by the other process, while the owner still runs the turn.
        with owner.client() as client:
            body = {"input": "across processes please", "background": True, "stream": True,
                    "custom_inputs": {"thread_id": "bg-two"}}  # fmt: skip
            head = first_events(client, "POST", "/responses", 6, json=body)
        response_id = head[0]["response"]["id"]
        rest: list[dict | str] = []
        read_stream(other, response_id, rest, starting_after=5)
        full: list[dict | str] = []
        read_stream(owner, response_id, full)
        assert rest[-2]["type"] == "response.completed"  # type: ignore[index]
        assert full[:6] == head and full[6:] == rest

        # Killed mid-answer: seen from the other process, it ends failed in bounded time.
        with owner.client() as client:
            started = background(client, "word " * 200, "bg-killed")
        events: list[dict | str] = []
        follower = threading.Thread(target=read_stream, args=(other, started["id"], events))
        follower.start()
        wait_deltas(database, started["id"], 3)
        owner.kill()
        killed_at = time.monotonic()
        follower.join(timeout=30)
        ended_in = time.monotonic() - killed_at
        print(f"\nkilled owner: failed after {ended_in:.2f} s (lease 2 s + sweep 0.5 s)")
        assert ended_in < 2 + 0.5 + 2
        assert events[-1] == "[DONE]"
        failed = events[-2]
        assert failed["type"] == "response.failed"  # type: ignore[index]
        assert failed["response"]["error"]["code"] == "server_gone"  # type: ignore[index]
        deltas = [e for e in events if isinstance(e, dict) and "delta" in e]
        assert len(deltas) >= 3
        with other.client() as client:
            stored = client.get(f"/responses/{started['id']}").json()
            assert stored["status"] == "failed" and stored["error"]["code"] == "server_gone"
            assert client.get("/api/threads/bg-killed").json()["active_response"] is None
    finally:
        if owner.process.poll() is None:
            owner.kill()
        assert other.interrupt() == 0


def test_privilege_checks_cover_the_response_tables(database: str) -> None:
    """What grant grants, doctor and start-up check: the two tables are in it."""
    import asyncio

    from lakebase_memory.schema import ensure_schema, missing_privileges
    from lakebase_memory.schema.privileges import app_tables

    assert {("ai_chatbot", "responses"), ("ai_chatbot", "response_events")} <= set(
        app_tables("public")
    )
    role = f"bg_{uuid.uuid4().hex[:8]}"  # roles are the cluster's, not the test database's
    asyncio.run(ensure_schema(database))
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA ai_chatbot, drizzle TO {role}")

    async def missing() -> list[str]:
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            conn.row_factory = dict_row  # type: ignore[assignment]
            return await missing_privileges(conn, "public", role=role)

    lacking = asyncio.run(missing())
    for table in ("responses", "response_events"):
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            assert f'{privilege} on ai_chatbot."{table}"' in lacking
