"""Agent endpoints: memory across requests, thread id resolution, streaming, de-duplication."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import quote

import httpx
import pytest
from langgraph.checkpoint.postgres import PostgresSaver

from conftest import LiveServer, answer_text, make_settings, say, sse_events


def test_second_request_sees_the_first(client: httpx.Client) -> None:
    say(client, "My name is Ada.", "t-memory")
    reply = say(client, "What is my name?", "t-memory")
    assert reply["custom_outputs"]["thread_id"] == "t-memory"
    # What the answer was made from: the whole (short) thread, nothing summarized.
    context = reply["custom_outputs"]["context"]
    assert context["messages_sent"] == 3 and context["messages_left_out"] == 0
    assert context["summarized"] is False and context["tokens_sent"] > 0
    assert 'the first was: "My name is Ada."' in answer_text(reply)
    assert "You have sent 2 messages" in answer_text(reply)


def test_threads_are_separate(client: httpx.Client) -> None:
    say(client, "apples", "t-a")
    reply = say(client, "bananas", "t-b")
    assert 'the first was: "bananas"' in answer_text(reply)


def test_responses_endpoint_accepts_the_same_body(client: httpx.Client) -> None:
    client.post("/responses", json={"input": "one", "custom_inputs": {"thread_id": "r"}})
    reply = client.post("/responses", json={"input": "two", "custom_inputs": {"thread_id": "r"}})
    assert reply.status_code == 200
    assert "You have sent 2 messages" in answer_text(reply.json())


def test_thread_id_resolution_order(client: httpx.Client) -> None:
    both = say(client, "x", None, custom_inputs={"thread_id": 42},
               context={"conversation_id": "conv"})  # fmt: skip
    assert both["custom_outputs"]["thread_id"] == "42"  # stringified, and it wins
    conversation = say(client, "x", None, context={"conversation_id": "conv-1"})
    assert conversation["custom_outputs"]["thread_id"] == "conv-1"
    blank = say(client, "x", None, custom_inputs={"thread_id": "  "},
                context={"conversation_id": "conv-2"})  # fmt: skip
    assert blank["custom_outputs"]["thread_id"] == "conv-2"
    generated = uuid.UUID(say(client, "x")["custom_outputs"]["thread_id"])
    assert generated.version == 7


def test_any_string_is_a_thread_id(client: httpx.Client) -> None:
    odd = "user/42 ? café 'quoted' \"double\""
    say(client, "first", odd)
    assert "You have sent 2 messages" in answer_text(say(client, "second", odd))
    listed = client.get("/api/threads").json()["threads"]
    assert odd in [t["id"] for t in listed]
    thread = client.get(f"/api/threads/{quote(odd, safe='')}")
    assert thread.status_code == 200, thread.text
    assert thread.json()["id"] == odd


def test_resent_history_is_not_duplicated(client: httpx.Client) -> None:
    first = say(client, "Hello", "t-dup")
    history = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": [{"type": "output_text", "text": answer_text(first)}]},
        {"role": "user", "content": "And again"},
    ]
    reply = client.post(
        "/invocations", json={"input": history, "custom_inputs": {"thread_id": "t-dup"}}
    ).json()
    assert "You have sent 2 messages" in answer_text(reply)
    messages = client.get("/api/threads/t-dup").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in messages[::2]] == ["Hello", "And again"]


def test_a_window_of_history_appends_only_the_tail(client: httpx.Client) -> None:
    a1 = answer_text(say(client, "one", "t-win"))
    a2 = answer_text(say(client, "two", "t-win"))
    window = [
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": a2},
        {"role": "user", "content": "three"},
    ]
    client.post("/invocations", json={"input": window, "custom_inputs": {"thread_id": "t-win"}})
    texts = [m["content"] for m in client.get("/api/threads/t-win").json()["messages"]]
    assert texts[:4] == ["one", a1, "two", a2]
    assert texts[4] == "three" and len(texts) == 6


def test_repeating_the_whole_history_is_refused(client: httpx.Client) -> None:
    answer = answer_text(say(client, "only", "t-same"))
    history = [{"role": "user", "content": "only"}, {"role": "assistant", "content": answer}]
    response = client.post(
        "/invocations", json={"input": history, "custom_inputs": {"thread_id": "t-same"}}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "nothing_new"
    assert len(client.get("/api/threads/t-same").json()["messages"]) == 2


def test_the_same_question_twice_is_two_turns(client: httpx.Client) -> None:
    say(client, "yes", "t-yes")
    reply = say(client, "yes", "t-yes")
    assert "You have sent 2 messages" in answer_text(reply)


def test_streaming_sends_the_full_event_sequence_and_the_thread_id(client: httpx.Client) -> None:
    response = client.post(
        "/invocations",
        json={"input": [{"role": "user", "content": "stream me"}], "stream": True},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    kinds = [e["type"] for e in events[:-1]]  # type: ignore[index]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert kinds.count("response.output_text.delta") > 3  # really streamed, word by word
    numbers = [e["sequence_number"] for e in events[:-1]]  # type: ignore[index]
    assert numbers == list(range(len(numbers)))
    deltas = "".join(e["delta"] for e in events[:-1] if e["type"].endswith(".delta"))  # type: ignore[index]
    done = events[-2]
    assert isinstance(done, dict)
    thread_id = done["custom_outputs"]["thread_id"]
    assert done["response"]["custom_outputs"]["thread_id"] == thread_id
    assert done["response"]["output"][0]["content"][0]["text"] == deltas
    assert 'You said: "stream me"' in deltas
    # The generated thread really holds the conversation.
    follow = say(client, "next", thread_id)
    assert 'the first was: "stream me"' in answer_text(follow)


def test_function_call_items_are_accepted_and_kept(client: httpx.Client) -> None:
    items = [
        {"role": "user", "content": "weather?"},
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "weather",
            "arguments": '{"city": "Oslo"}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": "rain"},
        {"role": "user", "content": "so?"},
    ]
    response = client.post(
        "/invocations", json={"input": items, "custom_inputs": {"thread_id": "fc"}}
    )
    assert response.status_code == 200, response.text
    messages = client.get("/api/threads/fc").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user", "assistant"]
    assert messages[1]["tool_calls"] == [
        {"call_id": "c1", "name": "weather", "arguments": {"city": "Oslo"}}
    ]
    assert messages[2]["call_id"] == "c1"


def test_health_and_agent_info(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "healthy"}
    info = client.get("/agent/info").json()
    assert info["use_case"] == "agent" and info["agent_api"] == "responses"
    assert info["name"] == "lakebase-memory"
    assert info["memory"]["database"] == "postgres"
    assert info["memory"]["server_version"].startswith("18")
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/invocations", "/responses", "/api/threads", "/health"} <= set(paths)


def test_langgraph_stock_saver_reads_the_server_thread_once_exported(
    database: str, serve, pg_admin: str
) -> None:
    server: LiveServer = serve(make_settings(database))
    with server.client() as client:
        say(client, "persist me", "stock-read")
        say(client, "and me", "stock-read")
    asyncio.run(export_in_place(database, "stock-read"))
    with PostgresSaver.from_conn_string(database) as saver:
        state = saver.get_tuple({"configurable": {"thread_id": "stock-read"}})
    assert state is not None
    texts = [m.content for m in state.checkpoint["channel_values"]["messages"]]
    assert texts[0] == "persist me" and texts[2] == "and me" and len(texts) == 4


@pytest.mark.parametrize("endpoint", ["/invocations", "/responses"])
def test_memory_survives_a_server_restart(database: str, serve, endpoint: str) -> None:
    first = serve(make_settings(database))
    with first.client() as client:
        client.post(endpoint, json={"input": "remember 7", "custom_inputs": {"thread_id": "r"}})
    first.__exit__()
    second = serve(make_settings(database))
    with second.client() as client:
        reply = client.post(endpoint, json={"input": "what?", "custom_inputs": {"thread_id": "r"}})
    assert 'the first was: "remember 7"' in answer_text(reply.json())


async def export_in_place(database: str, thread_id: str) -> None:
    from psycopg import AsyncConnection

    from lakebase_memory.memory.saver.transfer import export_stock_threads

    async with await AsyncConnection.connect(database, autocommit=True) as conn:
        report = await export_stock_threads(conn, [thread_id])
    assert len(report.moved) == 1


def test_turns_share_the_cached_messages_without_changing_them(database: str, serve) -> None:
    """A turn's graph reads the saver's cached messages as they are (no copy, see
    `prepare_turn`): what the process holds after many turns must be what the database holds,
    field for field, as a saver with no cache decodes it."""
    from psycopg import Connection
    from psycopg.rows import dict_row

    from lakebase_memory.memory.saver import LinearPostgresSaver

    server = serve(make_settings(database))
    with server.client() as http:
        for n in range(6):
            body = {"input": f"message {n}", "custom_inputs": {"thread_id": "shared"},
                    "stream": n % 2 == 1}  # fmt: skip
            assert http.post("/invocations", json=body).status_code == 200
    config = {"configurable": {"thread_id": "shared", "checkpoint_ns": ""}}
    warm = server.app.state.runtime.checkpointer.get_tuple(config)  # the server's cache
    with Connection.connect(database, autocommit=True, row_factory=dict_row) as conn:
        cold = LinearPostgresSaver(conn, cache_threads=0).get_tuple(config)
    assert warm is not None and cold is not None
    held, stored = warm.checkpoint["channel_values"], cold.checkpoint["channel_values"]
    assert len(stored["messages"]) == 12
    for mine, theirs in zip(held["messages"], stored["messages"], strict=True):
        assert mine.__dict__ == theirs.__dict__
    assert held.keys() == stored.keys()
