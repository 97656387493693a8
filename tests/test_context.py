"""Threads longer than the model's window: the thread keeps everything, the model is sent what
fits (policies summarize, trim, off), a message that alone cannot fit is a 413 before anything
is stored. The echo model records every prompt, so these tests check exactly what it got."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import ValidationError

from conftest import DIARY_WORDS, LiveServer, make_settings, say, sse_events
from lakebase_memory.agent import build_graph
from lakebase_memory.agent.context import ContextPlanner, ContextWindow, EstimatedTokens, new_start
from lakebase_memory.agent.context.summary import SUMMARY_HEADING, UPDATE_NOTES, stated_facts
from lakebase_memory.agent.context.tokens import message_tokens
from lakebase_memory.agent.models.echo import EchoChatModel
from lakebase_memory.config import ContextPolicy
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver

SYSTEM = "You are a test assistant."
FACT = "My name is Ada Lovelace and my locker code is 4471."


def filler(seed: int, words: int = 60) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(DIARY_WORDS) for _ in range(words)) + "."


def small_window(database: str, policy: str, tokens: int = 1024):
    return make_settings(
        database,
        system_prompt=SYSTEM,
        model_context_tokens=tokens,
        max_output_tokens=64,
        model_context_policy=policy,
    )


def answers(echo: EchoChatModel) -> list[list[tuple[str, str]]]:
    """The prompts of the turns' answers (not of the summary's own calls)."""
    return [p for p in echo.received if p[-1] != ("human", UPDATE_NOTES)]


def summary_calls(echo: EchoChatModel) -> list[list[tuple[str, str]]]:
    return [p for p in echo.received if p[-1] == ("human", UPDATE_NOTES)]


def converse(server: LiveServer, thread: str, turns: int) -> list[dict]:
    replies = []
    with server.client() as client:
        for turn in range(1, turns + 1):
            text = f"{FACT} {filler(turn)}" if turn == 1 else filler(turn)
            replies.append(say(client, text, thread))
    return replies


def stored(server: LiveServer, thread: str) -> dict:
    with server.client() as client:
        response = client.get(f"/api/threads/{thread}")
    assert response.status_code == 200, response.text
    return response.json()


def test_summarize_sends_the_newest_messages_and_a_summary_made_once_per_move(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    echo = EchoChatModel()
    server = serve(small_window(database, "summarize"), model=echo)
    replies = converse(server, "long", 12)
    thread = stored(server, "long")

    # The thread keeps everything.
    messages = thread["messages"]
    assert len(messages) == 24
    assert messages[0]["content"].startswith(FACT)

    contexts = [r["custom_outputs"]["context"] for r in replies]
    left_out = [c["messages_left_out"] for c in contexts]
    assert left_out[0] == 0 and left_out[-1] > 0  # the window moved
    assert left_out == sorted(left_out)  # and only forward
    moves = len({n for n in left_out if n > 0})
    assert moves >= 2
    # One summary per move, not one per turn.
    assert len(summary_calls(echo)) == moves

    # The last answer's prompt: system prompt with the summary, then exactly the newest messages.
    last = answers(echo)[-1]
    system_role, system_text = last[0]
    assert system_role == "system" and system_text.startswith(SYSTEM)
    assert SUMMARY_HEADING in system_text and FACT in system_text
    sent = last[1:]
    expected = [("human" if m["role"] == "user" else "ai", m["content"]) for m in messages[:-1]]
    assert sent == expected[left_out[-1] :]
    assert contexts[-1]["messages_sent"] == len(sent)
    assert contexts[-1]["summarized"] is True

    # Everything sent fits the window's prompt budget (by the same count the app uses).
    window = ContextWindow(1024, 64, ContextPolicy.SUMMARIZE)
    assert contexts[-1]["tokens_sent"] <= window.prompt_budget
    # The thread API shows the summary: the user's sentence with the name and code, verbatim.
    assert FACT in thread["context"]["facts"]
    assert thread["context"]["messages_left_out"] == left_out[-1]


def test_a_streamed_answer_at_a_move_carries_no_summary_tokens(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    echo = EchoChatModel()
    server = serve(small_window(database, "summarize"), model=echo)
    before = converse(server, "streamed", 3)
    calls = len(summary_calls(echo))
    with server.client() as client:
        for turn in range(4, 12):
            response = client.post(
                "/invocations",
                json={"input": filler(turn), "stream": True,
                      "custom_inputs": {"thread_id": "streamed"}},
            )  # fmt: skip
            events = sse_events(response)
            done = events[-2]
            assert isinstance(done, dict) and done["type"] == "response.completed"
            deltas = "".join(
                e["delta"] for e in events
                if isinstance(e, dict) and e["type"] == "response.output_text.delta"
            )  # fmt: skip
            assert deltas == done["response"]["output"][0]["content"][0]["text"]
            assert UPDATE_NOTES not in deltas
            if len(summary_calls(echo)) > calls:
                break  # this turn moved the window
        else:
            pytest.fail(f"the window never moved (after {before[-1]['custom_outputs']})")


def test_trim_sends_the_newest_messages_without_a_summary(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    echo = EchoChatModel()
    server = serve(small_window(database, "trim"), model=echo)
    replies = converse(server, "trimmed", 10)
    assert summary_calls(echo) == []
    last = answers(echo)[-1]
    assert last[0] == ("system", SYSTEM)  # nothing added to the system prompt
    left_out = replies[-1]["custom_outputs"]["context"]["messages_left_out"]
    assert left_out > 0
    messages = stored(server, "trimmed")["messages"]
    assert len(messages) == 20
    assert [text for _, text in last[1:]] == [m["content"] for m in messages[left_out:-1]]
    assert last[1][0] == "human"  # the sent part starts with a user message


def test_off_sends_the_whole_thread(database: str, serve: Callable[..., LiveServer]) -> None:
    echo = EchoChatModel()
    server = serve(small_window(database, "off"), model=echo)
    replies = converse(server, "whole", 8)
    assert len(answers(echo)[-1]) == 1 + 15  # system prompt and every message before the answer
    assert "context" not in replies[-1]["custom_outputs"]
    assert summary_calls(echo) == []


def test_a_message_that_cannot_fit_is_a_413_before_anything_is_stored(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    echo = EchoChatModel()
    server = serve(small_window(database, "summarize"), model=echo)
    huge = filler(1, words=2000)
    with server.client() as client:
        response = client.post(
            "/invocations", json={"input": huge, "custom_inputs": {"thread_id": "too-long"}}
        )
        streamed = client.post(
            "/invocations",
            json={"input": huge, "stream": True, "custom_inputs": {"thread_id": "too-long"}},
        )
        missing = client.get("/api/threads/too-long")
        listed = client.get("/api/threads").json()["threads"]
        # A thread with history refuses the long message and keeps what it had.
        say(client, "short and fine", "kept")
        refused = client.post(
            "/invocations", json={"input": huge, "custom_inputs": {"thread_id": "kept"}}
        )
        kept = client.get("/api/threads/kept").json()["messages"]
    for answer in (response, streamed, refused):
        assert answer.status_code == 413, answer.text
        error = answer.json()["error"]
        assert error["code"] == "message_too_long"
        assert "1024 tokens" in error["message"] and "MODEL_CONTEXT_TOKENS" in error["message"]
        assert error["details"]["context_tokens"] == 1024
        assert error["details"]["tokens"] > error["details"]["limit"]
    assert missing.status_code == 404
    assert listed == []
    assert kept[0]["content"] == "short and fine" and len(kept) == 2
    assert len(echo.received) == 1  # only the short message reached the model


def test_the_window_needs_room_for_an_answer(database: str) -> None:
    with pytest.raises(ValidationError, match="MAX_OUTPUT_TOKENS"):
        make_settings(database, model_context_tokens=1024, max_output_tokens=600)
    with pytest.raises(ValidationError):
        make_settings(database, model_context_policy="forget")


async def test_a_move_never_starts_at_a_tool_result() -> None:
    messages = [
        HumanMessage("a" * 300, id="1"),
        AIMessage("", id="2", tool_calls=[{"name": "t", "args": {}, "id": "c1"}]),
        ToolMessage("r" * 300, tool_call_id="c1", id="3"),
        ToolMessage("r" * 300, tool_call_id="c1", id="4"),
        AIMessage("b" * 300, id="5"),
        HumanMessage("c" * 30, id="6"),
    ]
    counter = EstimatedTokens()
    sizes = [await message_tokens(counter, m) for m in messages]
    # Room for the last three only: a start at a tool result would be next, but the start goes
    # to the user message (half the room), never between the call and its results.
    room = sum(sizes[3:]) + 1
    start = new_start(sizes, messages, 0, room)
    assert start == 5
    # Without a user message to start at, the earliest non-tool start that fits.
    no_human = messages[:5]
    start = new_start(sizes[:5], no_human, 0, sum(sizes[1:5]))
    assert start == 1 and not isinstance(no_human[start], ToolMessage)


def test_stated_facts_are_the_sentences_with_specifics() -> None:
    text = (
        "Hello there. My name is Ada Lovelace. I like long walks. The code is 4471! "
        'She said "bring the map". I think so.'
    )
    assert stated_facts(text) == [
        "My name is Ada Lovelace.",
        "The code is 4471!",
        'She said "bring the map".',
    ]


async def test_the_next_move_is_prepared_after_a_turn_and_used_by_the_next(
    saver: AsyncLinearPostgresSaver,
) -> None:
    """With prepare_ahead (the local model's), the summary and the model's reading of the new
    prompt happen after the turn that filled the window, so the next turn only adds its
    message; a next message too long for the prepared move makes the turn move by itself."""
    echo = EchoChatModel()
    window = ContextWindow(1024, 64, ContextPolicy.SUMMARIZE)
    planner = ContextPlanner(echo, EstimatedTokens(), window, SYSTEM, prepare_ahead=True)
    graph = build_graph(echo, SYSTEM, saver, planner=planner)
    config = {"configurable": {"thread_id": "ahead"}}

    async def turn(text: str) -> tuple[dict, list, list]:
        """The turn's final state, the prompts the model had before it (oldest first) and
        those it was sent in it until its answer (the answer's last)."""
        await planner.settle()
        before = echo.received
        state = await graph.ainvoke({"messages": [HumanMessage(text)]}, config)
        new = echo.received[len(before) :]
        answer = next(i for i, p in enumerate(new) if p[-1] == ("human", text))
        return state, before, new[: answer + 1]

    prepared_moves, left_out = 0, 0
    for number in range(1, 16):
        text = f"{FACT} {filler(number)}" if number == 1 else filler(number)
        state, before, sent = await turn(text)
        context = state.get("context", {})
        moved = context.get("left_out", 0) > left_out
        left_out = context.get("left_out", 0)
        if moved and len(sent) == 1:  # no summary call in the turn: the move was prepared
            prepared_moves += 1
            assert before[-2][-1] == ("human", UPDATE_NOTES)
            assert before[-1] == sent[-1][:-1]  # the model had read all but the new message
        # Whatever the way, the prompt fits and the first fact is in its summary.
        assert sum(len(t.encode()) // 3 + 8 for _, t in sent[-1]) <= window.prompt_budget
        if left_out:
            assert FACT in context["facts"]
            assert FACT in sent[-1][0][1]
    assert prepared_moves >= 2

    # A message much longer than the last one: the prepared move leaves too little room.
    state, _, sent = await turn(filler(99, words=250))
    assert len(sent) == 2 and sent[0][-1] == ("human", UPDATE_NOTES)
    assert state["context"]["left_out"] > left_out
    await planner.close()
