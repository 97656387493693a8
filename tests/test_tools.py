"""The tool-calling agent end to end: memory tools across chats, the Responses items of tool
calls (plain and streamed), client-side tools, failing tools, tools off."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from conftest import LiveServer, answer_text, make_settings, say, sse_events
from lakebase_memory.agent import build_graph
from lakebase_memory.agent.models.echo import EchoChatModel, memory_key_for, tool_call_for
from lakebase_memory.agent.models.embeddings import build_embeddings
from lakebase_memory.errors import ConfigurationError
from lakebase_memory.server.runtime import AppRuntime

FACT = "Remember that my favourite colour is blue"
KEY = "my_favourite_colour_is_blue"


def items(reply: dict, kind: str) -> list[dict]:
    return [item for item in reply["output"] if item["type"] == kind]


def test_a_fact_told_in_one_chat_is_known_in_the_next(client: httpx.Client) -> None:
    saved = say(client, FACT, "chat-1")
    [call] = items(saved, "function_call")
    assert call["name"] == "save_user_memory" and call["status"] == "completed"
    assert json.loads(call["arguments"]) == {
        "memory_key": KEY,
        "memory_data_json": json.dumps({"fact": "my favourite colour is blue"}),
    }
    [result] = items(saved, "function_call_output")
    assert result["call_id"] == call["call_id"]
    assert result["output"] == f"Successfully saved memory '{KEY}' for user."
    # The output's order: the call, its result, then the answer that followed them.
    assert [i["type"] for i in saved["output"]] == [
        "function_call", "function_call_output", "message",
    ]  # fmt: skip
    assert "Tool save_user_memory answered: Successfully saved" in answer_text(saved)

    recalled = say(client, "Recall my favourite colour", "chat-2")
    [call] = items(recalled, "function_call")
    assert call["name"] == "get_user_memory"
    assert json.loads(call["arguments"]) == {"query": "my favourite colour"}
    [result] = items(recalled, "function_call_output")
    assert result["output"].startswith("Found 1 relevant memories:")
    assert "my favourite colour is blue" in answer_text(recalled)
    # Chat 2 did not see chat 1: its answer came from the store.
    assert "You have sent 1 message" in answer_text(recalled)


def test_the_thread_keeps_tool_calls_and_results(client: httpx.Client) -> None:
    say(client, FACT, "kept")
    reply = say(client, "And what did you just do?", "kept")
    # The model was sent the call and its result with the rest of the thread.
    assert "You have sent 2 messages" in answer_text(reply)
    thread = client.get("/api/threads/kept").json()
    kinds = [m["role"] for m in thread["messages"]]
    assert kinds.count("tool") == 1, kinds


def test_a_streamed_tool_call_is_a_function_call_item(client: httpx.Client) -> None:
    body = {"input": FACT, "stream": True, "custom_inputs": {"thread_id": "streamed"}}
    response = client.post("/responses", json=body)
    assert response.status_code == 200
    events = [e for e in sse_events(response) if isinstance(e, dict)]
    kinds = [e["type"] for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    start = kinds.index("response.output_item.added")
    assert kinds[start : start + 5] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    added, first, second, done_args, done = events[start : start + 5]
    assert added["item"]["type"] == "function_call" and added["item"]["status"] == "in_progress"
    assert added["item"]["name"] == "save_user_memory"
    arguments = first["delta"] + second["delta"]
    assert done_args["arguments"] == arguments == done["item"]["arguments"]
    assert first["item_id"] == added["item"]["id"] == done["item"]["id"]
    assert {e["output_index"] for e in (added, first, second, done_args, done)} == {0}
    output = [e for e in events if e["type"] == "response.output_item.added"][1]
    assert output["item"]["type"] == "function_call_output" and output["output_index"] == 1
    completed = events[-1]
    assert completed["type"] == "response.completed"
    assert [i["type"] for i in completed["response"]["output"]] == [
        "function_call", "function_call_output", "message",
    ]  # fmt: skip
    assert completed["response"]["output"][2]["id"] == events[-2]["item"]["id"]


def test_a_client_tool_call_ends_the_turn_and_its_output_continues_it(
    client: httpx.Client,
) -> None:
    weather = {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    first = say(client, 'Call get_weather {"city": "Paris"}', "client-tool", tools=[weather])
    [call] = items(first, "function_call")
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    assert items(first, "function_call_output") == [] and items(first, "message") == []
    # The client ran it and sends the result: the model goes on from there.
    body = {
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}],
        "custom_inputs": {"thread_id": "client-tool"},
        "tools": [weather],
    }
    second = client.post("/invocations", json=body)
    assert second.status_code == 200, second.text
    assert "Tool get_weather answered: sunny" in answer_text(second.json())


def test_client_tools_may_not_take_the_servers_names(client: httpx.Client) -> None:
    body = {"input": "hi", "tools": [{"type": "function", "name": "get_user_memory"}]}
    response = client.post("/invocations", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_tools" and "get_user_memory" in error["message"]
    bad = client.post("/invocations", json={"input": "hi", "tools": [{"name": "has space"}]})
    assert bad.status_code == 422


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            '{"memory_key": "k", "memory_data_json": "not json"}',
            "Failed to save memory: Invalid JSON",
        ),
        (
            '{"memory_key": "k", "memory_data_json": "[1, 2]"}',
            "Failed: memory_data must be a JSON object, not list",
        ),
        (
            json.dumps({"memory_key": "k", "memory_data_json": json.dumps({"fact": "a\x00b"})}),
            "Failed: memory_data_json may not contain NUL",
        ),
    ],
)
def test_save_user_memory_refuses_what_is_not_a_json_object(
    client: httpx.Client, arguments: str, expected: str
) -> None:
    reply = say(client, f"Call save_user_memory {arguments}", f"bad-{len(arguments)}")
    [result] = items(reply, "function_call_output")
    assert result["output"].startswith(expected)
    # Nothing was saved under any key.
    [found] = items(say(client, "Recall k", f"bad-recall-{len(arguments)}"), "function_call_output")
    assert found["output"] == "No memories found for this user."


def test_one_users_memories_are_not_anothers(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(make_settings(database, trust_forwarded_identity=True))
    with server.client(headers={"X-Forwarded-Email": "ada@example.com"}) as ada:
        say(ada, FACT, "ada-chat")
        assert "blue" in answer_text(say(ada, "Recall my favourite colour", "ada-2"))
    with server.client(headers={"X-Forwarded-Email": "bob@example.com"}) as bob:
        reply = say(bob, "Recall my favourite colour", "bob-chat")
        [result] = items(reply, "function_call_output")
        assert result["output"] == "No memories found for this user."
        # A client-chosen user id does not reach the tools where identity is trusted.
        body = {
            "input": "Recall my favourite colour",
            "custom_inputs": {"user_id": "ada.example.com"},
        }
        [result] = items(bob.post("/invocations", json=body).json(), "function_call_output")
        assert result["output"] == "No memories found for this user."


def test_forget_deletes_the_memory(client: httpx.Client) -> None:
    say(client, FACT, "forget-1")
    reply = say(client, f"Forget {KEY}", "forget-2")
    [result] = items(reply, "function_call_output")
    assert result["output"] == f"Successfully deleted memory '{KEY}' for user."
    recalled = say(client, "Recall my favourite colour", "forget-3")
    [result] = items(recalled, "function_call_output")
    assert result["output"] == "No memories found for this user."


def test_with_tools_off_the_agent_only_talks(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(make_settings(database, agent_tools=False))
    with server.client() as client:
        reply = say(client, FACT, "no-tools")
        assert [i["type"] for i in reply["output"]] == ["message"]
        assert answer_text(reply).startswith(f'You said: "{FACT}"')


async def test_a_failing_tool_is_reported_to_the_model() -> None:
    @tool
    def boom(reason: str) -> str:
        """Always fails."""
        raise RuntimeError(f"tool server down: {reason}")

    graph = build_graph(EchoChatModel(), "system", None, tools=[boom])
    state = await graph.ainvoke({"messages": [HumanMessage('Call boom {"reason": "test"}')]})
    call, result, answer = state["messages"][1:]
    assert isinstance(call, AIMessage) and call.tool_calls[0]["name"] == "boom"
    assert isinstance(result, ToolMessage)
    assert result.content == (
        "The tool failed: RuntimeError: tool server down: test. Answer without it or try again."
    )
    assert "Tool boom answered: The tool failed" in str(answer.content)


async def test_the_tool_loop_is_bounded() -> None:
    calls = 0

    @tool
    def again() -> str:
        """Asks to be called again."""
        nonlocal calls
        calls += 1
        return "call again"

    class Insistent(EchoChatModel):
        def _reply(self, messages, **kwargs):  # type: ignore[no-untyped-def]
            if kwargs.get("tools"):
                return AIMessage("", tool_calls=[{"name": "again", "args": {}, "id": f"c{calls}"}])
            return super()._reply(messages, **kwargs)

    graph = build_graph(Insistent(), "system", None, tools=[again])
    state = await graph.ainvoke({"messages": [HumanMessage("go")]})
    assert calls == 8 and isinstance(state["messages"][-1], AIMessage)
    assert not state["messages"][-1].tool_calls


def test_the_echo_models_rules() -> None:
    assert memory_key_for("My favourite colour is BLUE, really!") == KEY + "_really"
    names = ["save_user_memory", "get_user_memory", "delete_user_memory", "x"]
    assert tool_call_for("remember: I like tea", names)["args"]["memory_key"] == "i_like_tea"  # type: ignore[index]
    assert tool_call_for("What do you remember about my job?", names)["args"] == {"query": "my job"}  # type: ignore[index]
    assert tool_call_for("forget i_like_tea", names)["args"] == {"memory_key": "i_like_tea"}  # type: ignore[index]
    assert tool_call_for('call x {"a": 1}', names)["args"] == {"a": 1}  # type: ignore[index]
    assert tool_call_for("call x {broken", names) is None
    assert tool_call_for("remember me", []) is None  # a rule fires only with its tool bound
    assert tool_call_for("Hello", names) is None


class NoTools(EchoChatModel):
    """A model class without `bind_tools` (LangChain's default, which refuses)."""

    bind_tools = BaseChatModel.bind_tools  # type: ignore[assignment]


async def test_a_model_that_cannot_call_tools_runs_without_them_unless_tools_are_asked_for(
    database: str,
) -> None:
    runtime = await AppRuntime.start(make_settings(database), model=NoTools())
    try:
        assert runtime.tool_names == [] and "tools" not in runtime.graph.nodes
    finally:
        await runtime.close()
    with pytest.raises(ConfigurationError, match=r"AGENT_TOOLS is on.*AGENT_TOOLS=false"):
        await AppRuntime.start(make_settings(database, agent_tools=True), model=NoTools())


def test_embedding_backends_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="EMBEDDING_MODEL"):
        build_embeddings(make_settings("postgresql://unused", embedding_backend="openai"))
    hashed = build_embeddings(make_settings("postgresql://unused", embedding_backend="hash"))
    assert hashed is not None and hashed.dims == 256
    assert len(hashed.embeddings.embed_query("blue")) == 256
    assert build_embeddings(make_settings("postgresql://unused")) is None
