"""The linear savers on the real embedded PostgreSQL: each message stored once, history, time
travel, forks, removals and edits, interrupts, concurrency, pruning and erasure."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, RemoveMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.types import Command
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from lakebase_memory.memory.saver import AsyncLinearPostgresSaver, LinearPostgresSaver
from lakebase_memory.schema import ensure_schema
from saver_fixtures import POOL_KWARGS, agent, asking_graph, config, one


def log_rows(database: str, thread_id: str) -> int:
    return int(
        one(
            database,
            "SELECT count(*) FROM ai_chatbot.checkpoint_messages WHERE thread_id = %s",
            thread_id,
        )
    )


def shape(messages: list[BaseMessage]) -> list[tuple[str, Any]]:
    return [(m.type, m.content) for m in messages]


async def say(
    graph: Any, thread_id: str, text: str, *, with_id: bool = True, **extra: str
) -> list[BaseMessage]:
    """One turn; the user's message gets an id first, as the server's turns do."""
    message = HumanMessage(text, id=str(uuid.uuid4()) if with_id else None)
    result = await graph.ainvoke({"messages": [message]}, config(thread_id, **extra))
    return result["messages"]


@pytest.mark.parametrize("with_id", [True, False], ids=["ids", "no-ids"])
async def test_fifty_turns_store_each_message_once(
    database: str, saver: Any, with_id: bool
) -> None:
    graph, reference = agent(saver), agent(InMemorySaver())
    for turn in range(1, 51):
        messages = await say(graph, "long", f"message {turn}", with_id=with_id)
        expected = await say(reference, "long", f"message {turn}", with_id=with_id)
    assert len(messages) == 100
    assert shape(messages) == shape(expected)
    assert "You have sent 50 messages" in messages[-1].content  # the model saw all history
    # 50 questions + 50 answers, each once, although ~150 checkpoints list them.
    assert log_rows(database, "long") == 100
    assert one(database, "SELECT count(*) FROM checkpoints WHERE thread_id = 'long'") >= 150
    # A checkpoint holds its messages as a reference of a few bytes in its own JSON, not a
    # copy of the list; no blob rows for them. A reply's write waits for the checkpoint that
    # holds the question it answers, so the log is in conversation order and the latest
    # reference is a single run.
    assert one(database, "SELECT count(*) FROM checkpoint_blobs WHERE channel = 'messages'") == 0
    latest = one(
        database,
        "SELECT checkpoint -> 'channel_values' -> 'messages' FROM checkpoints "
        "WHERE thread_id = 'long' ORDER BY checkpoint_id DESC LIMIT 1",
    )
    assert latest == {"lakebase.messages": [[0, 100]]}
    # A fresh saver (another process: empty cache) reads the same and appends only new ones.
    async with AsyncLinearPostgresSaver.from_conn_string(database) as cold:
        state = await agent(cold).aget_state(config("long"))
        assert shape(state.values["messages"]) == shape(messages)
        assert [m.id for m in state.values["messages"]] == [m.id for m in messages]
        await say(agent(cold), "long", "message 51")
    assert log_rows(database, "long") == 102


async def test_time_travel_and_fork(database: str, saver: Any) -> None:
    graph = agent(saver)
    for text in ("one", "two", "three"):
        await say(graph, "t", text)
    history = [s async for s in graph.aget_state_history(config("t"))]
    after_one = next(s for s in history if len(s.values.get("messages", [])) == 2 and not s.next)
    assert after_one.values["messages"][0].content == "one"

    # Time travel: continue from the state after turn one, in the same thread.
    branch = await graph.ainvoke({"messages": [HumanMessage("other")]}, after_one.config)
    assert [m.content for m in branch["messages"]][::2] == ["one", "other"]
    assert "You have sent 2 messages" in branch["messages"][-1].content
    latest = await graph.aget_state(config("t"))
    assert shape(latest.values["messages"]) == shape(branch["messages"])
    # The old branch is intact and the fork appended only its two new messages.
    old_head = history[0]
    assert len((await graph.aget_state(old_head.config)).values["messages"]) == 6
    assert log_rows(database, "t") == 8

    # Fork into a new thread: same history, then the copies evolve independently.
    await saver.acopy_thread("t", "t-copy")
    copied = [s.config["configurable"]["checkpoint_id"] async for s in saver.alist(config("t"))]
    assert [
        s.config["configurable"]["checkpoint_id"] async for s in saver.alist(config("t-copy"))
    ] == copied
    await say(graph, "t-copy", "only in the copy")
    assert len((await graph.aget_state(config("t-copy"))).values["messages"]) == 6
    assert len((await graph.aget_state(config("t"))).values["messages"]) == 4
    with pytest.raises(ValueError, match="already has checkpoints"):
        await saver.acopy_thread("t", "t-copy")


async def test_remove_and_edit_round_trip(database: str, saver: Any) -> None:
    graph = agent(saver)
    for text in ("keep", "drop", "last"):
        await say(graph, "r", text)
    before = (await graph.aget_state(config("r"))).values["messages"]
    dropped = before[2]
    await graph.aupdate_state(config("r"), {"messages": [RemoveMessage(id=dropped.id)]})
    after = (await graph.aget_state(config("r"))).values["messages"]
    assert [m.id for m in after] == [m.id for m in before if m.id != dropped.id]
    assert log_rows(database, "r") == 6  # a removal is a new reference, not new entries

    edited = AIMessage("edited answer", id=before[1].id)
    await graph.aupdate_state(config("r"), {"messages": [edited]})
    now = (await graph.aget_state(config("r"))).values["messages"]
    assert now[1].content == "edited answer" and now[1].id == before[1].id
    assert log_rows(database, "r") == 7  # the edit is one new entry
    # Every earlier checkpoint still reads exactly as it was written.
    history = [s async for s in graph.aget_state_history(config("r"))]
    assert any(shape(s.values["messages"]) == shape(before) for s in history)
    assert any(shape(s.values["messages"]) == shape(after) for s in history)

    await graph.aupdate_state(config("r"), {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES)]})
    assert (await graph.aget_state(config("r"))).values["messages"] == []
    await say(graph, "r", "fresh start")
    assert (
        "You have sent 1 message"
        in (await graph.aget_state(config("r"))).values["messages"][-1].content
    )


async def test_interrupt_and_resume(saver: Any) -> None:
    graph = asking_graph(saver)
    first = await graph.ainvoke({"messages": [HumanMessage("hi", id="hi")]}, config("i"))
    assert first["__interrupt__"][0].value == "what is your name?"
    state = await graph.aget_state(config("i"))
    assert state.next == ("ask",) and state.interrupts
    done = await graph.ainvoke(Command(resume="Ada"), config("i"))
    assert [m.content for m in done["messages"]] == ["hi", "hello Ada"]


async def test_independent_threads_do_not_wait_for_each_other(
    database: str, saver: Any, pool: AsyncConnectionPool
) -> None:
    graph = agent(saver)
    await say(graph, "busy", "hello")
    # Another session holds thread 'busy's lock, as a long write to it would.
    async with await psycopg.AsyncConnection.connect(database) as other:
        await other.execute(
            "SELECT 1 FROM ai_chatbot.checkpoint_threads WHERE thread_id = 'busy' FOR UPDATE"
        )
        blocked = asyncio.create_task(say(graph, "busy", "again"))
        # Eight other threads run to completion, concurrently, meanwhile.
        results = await asyncio.wait_for(
            asyncio.gather(*(say(graph, f"free-{i}", f"hi {i}") for i in range(8))), 30
        )
        assert all(len(r) == 2 for r in results)
        assert not blocked.done()
        await other.rollback()
    messages = await asyncio.wait_for(blocked, 30)
    assert [m.content for m in messages][::2] == ["hello", "again"]

    # Concurrent turns on many threads: each thread's history is whole and its own.
    async def converse(thread_id: str) -> list[BaseMessage]:
        for turn in range(5):
            messages = await say(graph, thread_id, f"{thread_id} {turn}")
        return messages

    threads = [f"c-{i}" for i in range(8)]
    for thread_id, messages in zip(
        threads, await asyncio.gather(*map(converse, threads)), strict=True
    ):
        assert [m.content for m in messages][::2] == [f"{thread_id} {t}" for t in range(5)]
        assert log_rows(database, thread_id) == 10


async def test_prune_and_delete_reclaim_the_log(database: str, saver: Any) -> None:
    graph = agent(saver)
    for text in ("a", "b", "c"):
        await say(graph, "p", text)
    await graph.aupdate_state(config("p"), {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES)]})
    await say(graph, "p", "d")
    await saver.aprune(["p"], strategy="keep_latest")
    assert one(database, "SELECT count(*) FROM checkpoints WHERE thread_id = 'p'") == 1
    assert log_rows(database, "p") == 2  # only what the kept checkpoint lists
    await say(graph, "p", "e")  # the cache was reset with the thread's generation
    assert [m.content for m in (await graph.aget_state(config("p"))).values["messages"]][::2] == [
        "d",
        "e",
    ]
    assert log_rows(database, "p") == 4

    await saver.adelete_thread("p")
    for table in ("ai_chatbot.checkpoint_messages", "ai_chatbot.checkpoint_threads"):
        assert one(database, f"SELECT count(*) FROM {table} WHERE thread_id = 'p'") == 0
    assert (await graph.aget_state(config("p"))).values == {}


def test_sync_saver_with_a_sync_graph(database: str) -> None:
    def reply(state: MessagesState) -> dict[str, list[BaseMessage]]:
        n = len(state["messages"])
        return {"messages": [AIMessage(f"reply {n}", id=str(uuid.uuid4()))]}

    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    with ConnectionPool(database, kwargs=POOL_KWARGS) as pool:
        saver = LinearPostgresSaver(pool)
        saver.setup()
        graph = builder.compile(checkpointer=saver)
        for turn in range(10):
            graph.invoke({"messages": [HumanMessage(f"q{turn}")]}, config("s"))
        messages = graph.get_state(config("s")).values["messages"]
        assert [m.content for m in messages][-2:] == ["q9", "reply 19"]
        assert log_rows(database, "s") == 20
        saver.delete_thread("s")
        assert graph.get_state(config("s")).values == {}


async def test_app_migrations_create_the_log_tables(database: str) -> None:
    await ensure_schema(database)
    async with AsyncLinearPostgresSaver.from_conn_string(database) as saver:
        await say(agent(saver), "m", "hello")
    assert log_rows(database, "m") == 2


def test_connections_must_autocommit(database: str) -> None:
    with psycopg.connect(database) as conn, pytest.raises(ValueError, match="autocommit"):
        LinearPostgresSaver(conn)
