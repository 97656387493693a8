"""One turn at a time per thread (leases), late writes of deleted threads, the one-statement
write path across processes, and the per-thread statistics the thread lists show."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.base import empty_checkpoint
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from lakebase_memory.agent import build_graph
from lakebase_memory.memory.saver import (
    AsyncLinearPostgresSaver,
    LinearPostgresSaver,
    StaleTurnError,
    ThreadBusyError,
)
from lakebase_memory.memory.saver.ops import read_only
from saver_fixtures import POOL_KWARGS, agent, checkpoint_rows, config


def head(database: str, thread_id: str) -> dict[str, Any] | None:
    with psycopg.connect(database, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "SELECT * FROM ai_chatbot.checkpoint_threads WHERE thread_id = %s", (thread_id,)
        ).fetchone()


async def turn(graph: Any, cfg: dict[str, Any], text: str) -> list[BaseMessage]:
    message = HumanMessage(text, id=str(uuid.uuid4()))
    result = await graph.ainvoke({"messages": [message]}, cfg, durability="exit")
    return result["messages"]


async def leased_turn(
    saver: AsyncLinearPostgresSaver, graph: Any, thread_id: str, text: str
) -> list[BaseMessage]:
    """One turn on the thread under a turn lease of its own, released afterwards."""
    async with saver.aturn(config(thread_id)) as cfg:
        return await turn(graph, cfg, text)


async def test_a_second_turn_on_a_busy_thread_is_refused(saver: AsyncLinearPostgresSaver) -> None:
    graph = agent(saver)
    async with saver.aturn(config("t1", user_id="ann")) as cfg:
        with pytest.raises(ThreadBusyError, match="busy with another turn") as refused:
            async with saver.aturn(config("t1")):
                pass
        assert refused.value.seconds_left and refused.value.seconds_left > 0
        # Another thread is not affected.
        await leased_turn(saver, graph, "t2", "elsewhere")
        await turn(graph, cfg, "hello")
    # Released: the next turn goes ahead and sees the first.
    messages = await leased_turn(saver, graph, "t1", "again")
    assert [m.content for m in messages if isinstance(m, HumanMessage)] == ["hello", "again"]


async def test_an_expired_lease_is_taken_over_and_its_late_write_refused(
    database: str, saver: AsyncLinearPostgresSaver
) -> None:
    graph = agent(saver)
    await leased_turn(saver, graph, "t", "one")
    crashed = await saver.aacquire_turn("t", lease_seconds=1)  # its process never renews
    await asyncio.sleep(1.2)
    await leased_turn(saver, graph, "t", "two")
    stale = {"configurable": {**config("t")["configurable"], "__lakebase_turn_id": crashed}}
    with pytest.raises(StaleTurnError, match="expired and another turn took"):
        await turn(graph, stale, "late")
    state = await graph.aget_state(config("t"))
    assert [m.content for m in state.values["messages"] if m.type == "human"] == ["one", "two"]


async def test_a_thread_deleted_during_a_turn_stays_deleted(
    database: str, saver: AsyncLinearPostgresSaver
) -> None:
    graph = agent(saver)
    await leased_turn(saver, graph, "gone", "before")
    async with saver.aturn(config("gone")) as cfg:
        await saver.adelete_thread("gone")
        with pytest.raises(StaleTurnError, match="deleted while this turn ran"):
            await turn(graph, cfg, "late")
    assert set(checkpoint_rows(database, "gone").values()) == {0}
    assert await saver.aget_tuple(config("gone")) is None


class BarrierModel(BaseChatModel):
    """Answers only once `parties` calls are in flight together: serialised turns hang."""

    barrier: Any

    @property
    def _llm_type(self) -> str:
        return "barrier"

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> ChatResult:
        await asyncio.wait_for(self.barrier.wait(), timeout=20)
        return ChatResult(generations=[ChatGeneration(message=AIMessage("ok"))])


async def test_independent_threads_run_their_turns_at_the_same_time(
    saver: AsyncLinearPostgresSaver,
) -> None:
    graph = build_graph(BarrierModel(barrier=asyncio.Barrier(4)), "Be brief.", saver)

    await asyncio.gather(*(leased_turn(saver, graph, f"parallel-{i}", "hi") for i in range(4)))


async def test_two_processes_writing_one_thread_keep_one_log(
    database: str, pool: AsyncConnectionPool, saver: AsyncLinearPostgresSaver
) -> None:
    """Each saver's cache goes stale when the other writes: its one-statement write is then
    refused by the database and redone under the lock, never duplicating or losing entries."""
    async with AsyncLinearPostgresSaver.from_conn_string(database) as other:
        graphs = [agent(saver), agent(other)]
        for i in range(8):
            messages = await turn(graphs[i % 2 if i < 4 else 0], config("shared"), f"m{i}")
        assert [m.content for m in messages if m.type == "human"] == [f"m{i}" for i in range(8)]
        assert "You have sent 8 messages" in messages[-1].content
    stats = head(database, "shared")
    assert stats is not None and stats["next_seq"] == 16
    assert checkpoint_rows(database, "shared")["ai_chatbot.checkpoint_messages"] == 16


async def test_thread_statistics_follow_every_write(
    database: str, saver: AsyncLinearPostgresSaver
) -> None:
    graph = agent(saver)
    for text in ("a" * 1000, "b" * 1000, "c" * 1000):
        await turn(graph, config("stats", user_id="bob"), text)
    stats = head(database, "stats")
    assert stats is not None
    assert stats["user_id"] == "bob" and stats["message_count"] == 6
    assert stats["size_bytes"] > 3000
    with psycopg.connect(database) as conn:
        measured = conn.execute(
            "SELECT (SELECT sum(octet_length(checkpoint::text) + octet_length(metadata::text))"
            " FROM checkpoints WHERE thread_id = 'stats') + (SELECT coalesce(sum(length(blob)),"
            " 0) FROM checkpoint_blobs WHERE thread_id = 'stats') + (SELECT sum(length(blob)) "
            "FROM ai_chatbot.checkpoint_messages WHERE thread_id = 'stats')"
        ).fetchone()[0]
    # Counted from what was sent; the stored JSON text may differ by a few bytes per row.
    assert abs(stats["size_bytes"] - measured) < 0.05 * measured
    await saver.aprune(["stats"])  # recounted exactly after a prune
    pruned = head(database, "stats")
    assert pruned is not None and 0 < pruned["size_bytes"] < stats["size_bytes"]
    assert pruned["message_count"] == 6
    assert pruned["updated_at"] >= stats["updated_at"]


def test_the_sync_saver_holds_turns_too(database: str) -> None:
    with ConnectionPool(database, kwargs=POOL_KWARGS, open=True) as pool:
        saver = LinearPostgresSaver(pool)
        saver.setup()
        with saver.turn(config("sync", user_id="cy"), lease_seconds=3) as cfg:
            with pytest.raises(ThreadBusyError):
                saver.acquire_turn("sync")
            saved = saver.put(cfg, empty_checkpoint(), {}, {})
        assert saver.get_tuple(saved) is not None
        turn_id = saver.acquire_turn("sync")  # released
        saver.delete_thread("sync")
        late = {"configurable": {**cfg["configurable"], "__lakebase_turn_id": turn_id}}
        with pytest.raises(StaleTurnError):
            saver.put(late, empty_checkpoint(), {}, {})
        assert saver.get_tuple(config("sync")) is None


async def test_the_package_exports_both_savers_like_the_stock_ones(database: str) -> None:
    import lakebase_memory

    async with lakebase_memory.AsyncLinearPostgresSaver.from_conn_string(database) as saver:
        await saver.setup()
        await agent(saver).ainvoke({"messages": [HumanMessage("hi")]}, config("top"))
    with lakebase_memory.LinearPostgresSaver.from_conn_string(database) as sync_saver:
        sync_saver.setup()  # idempotent
        latest = sync_saver.get_tuple(config("top"))
    assert latest is not None
    assert [m.type for m in latest.checkpoint["channel_values"]["messages"]] == ["human", "ai"]


def stock_thread(database: str, thread_id: str) -> Any:
    """A thread only LangGraph's stock saver wrote (no head row), and a sync graph factory."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.graph import END, START, MessagesState, StateGraph

    def graph(saver: Any) -> Any:
        builder = StateGraph(MessagesState)
        builder.add_node(
            "a", lambda s: {"messages": [AIMessage("re", id="a" + s["messages"][-1].id)]}
        )
        builder.add_edge(START, "a")
        builder.add_edge("a", END)
        return builder.compile(checkpointer=saver)

    with psycopg.connect(database, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        stock = PostgresSaver(conn)
        stock.setup()
        for i in ("1", "2"):
            graph(stock).invoke({"messages": [HumanMessage(i, id=i)]}, config(thread_id))
    return graph


def test_pruning_a_stock_thread_waits_for_nobody_and_blocks_a_first_linear_write(
    database: str,
) -> None:
    """Prune reads the references, then deletes unreferenced entries: a first write of the
    linear saver in between would lose its new entries. It waits on the thread's row."""
    import threading

    from lakebase_memory.memory.saver import sql
    from lakebase_memory.memory.saver.ops import BEGIN

    graph = stock_thread(database, "s1")
    with psycopg.connect(database, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        LinearPostgresSaver(conn).setup()
    writer_done = threading.Event()

    def first_linear_write() -> None:
        with LinearPostgresSaver.from_conn_string(database) as saver:
            graph(saver).invoke({"messages": [HumanMessage("3", id="3")]}, config("s1"))
        writer_done.set()

    writer = threading.Thread(target=first_linear_write)
    with psycopg.connect(database, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        op = LinearPostgresSaver(conn)._op_prune_keep_latest("s1", [])
        cur = conn.cursor(binary=True, row_factory=psycopg.rows.dict_row)
        transaction = conn.transaction()
        query = next(op)
        while True:
            rows: list[Any] = []
            if query is BEGIN:
                transaction.__enter__()
            else:
                if query.sql == sql.DELETE_UNREFERENCED_LOG:
                    writer.start()
                    assert not writer_done.wait(0.5), "the writer went through the prune"
                cur.execute(query.sql, query.params)
                rows = cur.fetchall() if query.fetch else []
            try:
                query = op.send(rows)
            except StopIteration:
                break
        transaction.__exit__(None, None, None)
    writer.join(timeout=20)
    assert writer_done.is_set()
    with LinearPostgresSaver.from_conn_string(database) as saver:
        latest = saver.get_tuple(config("s1"))
    assert latest is not None
    assert [m.content for m in latest.checkpoint["channel_values"]["messages"]] == [
        "1",
        "re",
        "2",
        "re",
        "3",
        "re",
    ][-len(latest.checkpoint["channel_values"]["messages"]) :]


def test_maintenance_leaves_head_rows_only_to_threads_with_checkpoints(database: str) -> None:
    """Maintenance locks threads through their head rows, creating missing ones: a stock
    thread that keeps checkpoints keeps its new row (a later linear write waits on it, as
    above), a thread left with nothing gets none, and a deleted one loses it."""
    for thread_id in ("s1", "s2", "s3"):
        stock_thread(database, thread_id)
    with psycopg.connect(database, autocommit=True) as conn:  # s3's checkpoints: one run
        conn.execute(
            """UPDATE checkpoints SET metadata = metadata || '{"run_id": "r3"}'"""
            " WHERE thread_id = 's3'"
        )
    with LinearPostgresSaver.from_conn_string(database) as saver:
        saver.setup()
        saver.prune(["s1", "unknown"], strategy="keep_latest")
        saver.delete_for_runs(["no-such-run"])
        saver.delete_for_runs(["r3"])  # s3 left with nothing
        saver.delete_thread("s2")
        saver.delete_thread("unknown-too")
        saver.copy_thread("s2", "copy-of-deleted")  # nothing to copy: no thread appears
        saver.copy_thread("s1", "copy-of-s1")
    assert head(database, "s1") is not None and checkpoint_rows(database, "s1")["checkpoints"]
    assert head(database, "copy-of-s1") is not None
    for gone in ("unknown", "unknown-too", "s2", "s3", "copy-of-deleted"):
        assert head(database, gone) is None, gone
    for emptied in ("s2", "s3"):
        assert set(checkpoint_rows(database, emptied).values()) == {0}


async def test_editing_a_read_message_in_place_changes_neither_cache_nor_store(
    database: str, saver: AsyncLinearPostgresSaver
) -> None:
    graph = agent(saver)
    await graph.ainvoke({"messages": [HumanMessage("hi", id="h1")]}, config("edit"))
    state = await graph.aget_state(config("edit"))
    first = state.values["messages"][0]
    first.additional_kwargs["note"] = "edited in place"  # nested: not a field reassignment
    again = await graph.aget_state(config("edit"))
    assert again.values["messages"][0].additional_kwargs == {}
    # Written back as an update, the edit is a new log entry every process reads.
    await graph.aupdate_state(config("edit"), {"messages": [first]})
    async with AsyncLinearPostgresSaver.from_conn_string(database) as fresh:
        stored = await agent(fresh).aget_state(config("edit"))
    assert stored.values["messages"][0].additional_kwargs == {"note": "edited in place"}


async def test_a_read_only_read_shares_the_cached_messages_and_others_still_copy(
    saver: AsyncLinearPostgresSaver,
) -> None:
    graph = agent(saver)
    await graph.ainvoke({"messages": [HumanMessage("hi", id="h1")]}, config("ro"))
    looked = [
        (await graph.aget_state(read_only(config("ro")))).values["messages"] for _ in range(2)
    ]
    assert all(a is b for a, b in zip(*looked, strict=True))  # no copy per read
    copied = (await graph.aget_state(config("ro"))).values["messages"]
    assert [m.id for m in copied] == [m.id for m in looked[0]]
    assert not any(a is b for a, b in zip(copied, looked[0], strict=True))


async def test_a_failed_renewal_is_retried(
    database: str, saver: AsyncLinearPostgresSaver, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = saver.arenew_turn
    calls: list[int] = []

    async def flaky(*args: Any, **kwargs: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.OperationalError("connection blip")
        return await real(*args, **kwargs)

    monkeypatch.setattr(saver, "arenew_turn", flaky)
    graph = agent(saver)
    async with saver.aturn(config("long-turn"), lease_seconds=1.5) as cfg:
        await asyncio.sleep(2.2)  # past the lease: alive only if renewal went on after the blip
        await graph.ainvoke({"messages": [HumanMessage("late", id="l1")]}, cfg)
    assert len(calls) >= 2


async def test_a_log_changed_outside_the_saver_is_reported(
    database: str, saver: AsyncLinearPostgresSaver
) -> None:
    from lakebase_memory.memory.saver import MessageLogError

    await agent(saver).ainvoke({"messages": [HumanMessage("hi", id="h1")]}, config("damaged"))
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DELETE FROM ai_chatbot.checkpoint_messages WHERE thread_id = 'damaged'")
    async with AsyncLinearPostgresSaver.from_conn_string(database) as cold:  # no cache to hide it
        with pytest.raises(MessageLogError, match="changed outside the saver"):
            await cold.aget_tuple(config("damaged"))


async def test_pooled_connections_must_autocommit(database: str) -> None:
    from lakebase_memory.memory.lifecycle import ThreadStore

    async with AsyncConnectionPool(database, min_size=1, open=False) as plain:
        with pytest.raises(ValueError, match="AsyncLinearPostgresSaver needs connections opened"):
            await AsyncLinearPostgresSaver(plain).aget_tuple(config("x"))
        with pytest.raises(ValueError, match=r"ThreadStore needs .* autocommit=True"):
            await ThreadStore(plain).get("x")
