"""Connections the server drops under the app (a restart, `pg_terminate_backend`, an idle
timeout): work that is safe to repeat runs again on a checked connection, exactly once in
effect; a copy, which is not, fails and leaves nothing behind.

Each drop is made while the statement waits on a lock another session holds, so the test
knows the statement was in flight when its session ended.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from psycopg_pool import (
    AsyncConnectionPool,
    ConnectionPool,
    PoolClosed,
    PoolTimeout,
    TooManyRequests,
)

from conftest import answer_text, make_settings, say
from lakebase_memory.database.reconnect import connection_lost
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver, LinearPostgresSaver, aio
from lakebase_memory.memory.threads import ThreadCatalogue
from saver_fixtures import POOL_KWARGS, agent, checkpoint_rows, config, one

WAITING = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""


def drop_the_waiting_session(admin: psycopg.Connection[Any]) -> None:
    """End the session that waits on a lock, once one does (and wait until it is gone)."""
    for _ in range(1000):
        if pids := [pid for (pid,) in admin.execute(WAITING).fetchall()]:
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
            return
        time.sleep(0.01)
    raise AssertionError("no session waited on the lock")


@contextmanager
def dropped_while_waiting(database: str, lock: str) -> Iterator[None]:
    """While the block runs, another transaction holds `lock`; the session whose statement
    waits on it is ended, then the lock is let go."""
    locked, failures = threading.Event(), []

    def hold() -> None:
        try:
            with (
                psycopg.connect(database) as locker,
                psycopg.connect(database, autocommit=True) as admin,
            ):
                locker.execute(lock)
                locked.set()
                try:
                    drop_the_waiting_session(admin)
                finally:
                    locker.rollback()
        except BaseException as error:
            failures.append(error)
            locked.set()

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait()
    try:
        yield
    finally:
        holder.join()
        if failures:
            raise failures[0]


def head_lock(thread_id: str) -> str:
    return f"SELECT 1 FROM ai_chatbot.checkpoint_threads WHERE thread_id = '{thread_id}' FOR UPDATE"


NEXT_SEQ = "SELECT next_seq FROM ai_chatbot.checkpoint_threads WHERE thread_id = %s"
CHAT_LOCK = 'SELECT 1 FROM ai_chatbot."Chat" WHERE "threadId" = \'t\' FOR UPDATE'


async def turn(graph: Any, thread_id: str, text: str) -> list[Any]:
    message = HumanMessage(text, id=str(uuid.uuid4()))
    result = await graph.ainvoke({"messages": [message]}, config(thread_id), durability="exit")
    return result["messages"]


async def test_a_checkpoint_write_whose_connection_drops_is_saved_once(
    saver: AsyncLinearPostgresSaver, database: str
) -> None:
    graph = agent(saver)
    await turn(graph, "t", "first")
    with dropped_while_waiting(database, head_lock("t")):
        messages = await turn(graph, "t", "second")
    assert [m.type for m in messages] == ["human", "ai", "human", "ai"]
    assert "You have sent 2 messages" in messages[-1].content
    assert checkpoint_rows(database, "t")["ai_chatbot.checkpoint_messages"] == 4
    # A saver with nothing cached reads the same thread back.
    fresh = AsyncLinearPostgresSaver(saver.conn)
    stored = await fresh.aget_tuple(config("t"))
    assert stored is not None
    assert [m.id for m in stored.checkpoint["channel_values"]["messages"]] == [
        m.id for m in messages
    ]


async def test_a_read_whose_connection_drops_is_read_again(
    saver: AsyncLinearPostgresSaver, database: str
) -> None:
    await turn(agent(saver), "t", "hello")
    with dropped_while_waiting(database, "LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE"):
        stored = await saver.aget_tuple(config("t"))
    assert stored is not None
    assert len(stored.checkpoint["channel_values"]["messages"]) == 2


def lose_first_ack(monkeypatch: pytest.MonkeyPatch, operation: str) -> list[str]:
    """The first `operation` (an `_op_*` name) of the async saver commits, and then its
    connection fails before the client hears of it: the answer is lost, not the write."""
    lost: list[str] = []
    real = aio.adrive

    async def drive(conn: Any, cur: Any, op: Any) -> Any:
        result = await real(conn, cur, op)
        if op.gi_code.co_name == operation and not lost:
            lost.append(operation)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return result

    monkeypatch.setattr(aio, "adrive", drive)
    return lost


async def test_a_checkpoint_write_repeated_after_it_committed_adds_nothing(
    saver: AsyncLinearPostgresSaver, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = agent(saver)
    await turn(graph, "t", "first")
    lost = lose_first_ack(monkeypatch, "_op_put")
    messages = await turn(graph, "t", "second")
    assert lost and len(messages) == 4
    rows = checkpoint_rows(database, "t")
    assert rows["ai_chatbot.checkpoint_messages"] == 4 and rows["checkpoints"] == 2
    assert one(database, NEXT_SEQ, "t") == 4
    # The thread goes on as if nothing happened, in this saver and in a fresh one.
    await turn(graph, "t", "third")
    assert checkpoint_rows(database, "t")["ai_chatbot.checkpoint_messages"] == 6
    stored = await AsyncLinearPostgresSaver(saver.conn).aget_tuple(config("t"))
    assert stored is not None
    assert [m.type for m in stored.checkpoint["channel_values"]["messages"]] == ["human", "ai"] * 3


async def test_a_turn_lease_taken_again_after_it_committed_is_the_turn_s_own(
    saver: AsyncLinearPostgresSaver, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = lose_first_ack(monkeypatch, "_op_acquire_turn")
    turn_id = await saver.aacquire_turn("t")  # not ThreadBusyError: the lease is its own
    assert lost
    assert str(one(database, "SELECT turn_id FROM ai_chatbot.checkpoint_threads")) == turn_id
    await saver.arelease_turn("t", turn_id)
    await saver.arelease_turn("t", await saver.aacquire_turn("t"))


async def test_a_delete_repeated_after_it_committed_succeeds(
    saver: AsyncLinearPostgresSaver, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await turn(agent(saver), "t", "hello")
    lost = lose_first_ack(monkeypatch, "_op_delete_thread")
    await saver.adelete_thread("t")
    assert lost and not any(checkpoint_rows(database, "t").values())
    assert await saver.aget_tuple(config("t")) is None


async def test_a_copy_whose_connection_drops_fails_and_leaves_nothing(
    saver: AsyncLinearPostgresSaver, database: str
) -> None:
    await turn(agent(saver), "source", "hello")
    with (
        pytest.raises(psycopg.OperationalError) as dropped,
        dropped_while_waiting(database, head_lock("source")),
    ):
        await saver.acopy_thread("source", "target")
    assert connection_lost(dropped.value)
    assert not any(checkpoint_rows(database, "target").values())
    assert checkpoint_rows(database, "source")["checkpoints"] > 0
    await saver.acopy_thread("source", "target")  # the caller may simply try again
    assert checkpoint_rows(database, "target")["checkpoints"] > 0


def test_the_sync_saver_reads_again_after_a_drop(database: str) -> None:
    with ConnectionPool(database, kwargs=POOL_KWARGS, min_size=1, max_size=2) as pool:
        saver = LinearPostgresSaver(pool)
        saver.setup()
        cfg = config("t")
        saver.put(cfg, empty_checkpoint(), {"source": "input", "step": -1}, {})
        with psycopg.connect(database, autocommit=True) as admin:
            # Dropped while idle, unseen by the pool: the next statement on it fails.
            for (pid,) in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchall():
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        assert saver.get_tuple(cfg) is not None


async def test_a_thread_claim_whose_connection_drops_is_made_again(
    db: str, app_pool: AsyncConnectionPool
) -> None:
    threads = ThreadCatalogue(app_pool)
    await threads.claim("t", "ann", "hello")
    with dropped_while_waiting(db, CHAT_LOCK):
        claimed = await threads.claim("t", "ann", "again")
    assert claimed.thread_id == "t" and claimed.user_id == "ann"
    assert [t.thread_id for t in (await threads.list("ann")).threads] == ["t"]


@pytest.mark.parametrize(
    ("error", "dropped"),
    [
        (psycopg.errors.AdminShutdown("terminating connection"), True),  # pg_terminate_backend
        (psycopg.errors.IdleSessionTimeout("idle session timeout"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.errors.ConnectionFailure("connection failure"), True),  # class 08
        (psycopg.errors.ProtocolViolation("protocol violation"), False),  # would recur
        (PoolTimeout("couldn't get a connection after 30 sec"), False),
        (PoolClosed("the pool is closed"), False),
        (TooManyRequests("the pool has too many waiting clients"), False),
        (psycopg.errors.SerializationFailure("could not serialize"), False),
        (psycopg.errors.QueryCanceled("canceling statement"), False),
    ],
)
def test_what_counts_as_a_dropped_connection(error: Exception, dropped: bool) -> None:
    assert connection_lost(error) is dropped


async def test_a_closed_pool_fails_at_once_and_is_not_taken_for_a_drop(
    pool: AsyncConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    saver = AsyncLinearPostgresSaver(pool)
    await saver.setup()
    await pool.close()
    with pytest.raises(PoolClosed):
        await saver.aget_tuple(config("t"))
    assert "dropped the connection" not in caplog.text


def test_a_turn_whose_connections_drop_mid_statement_is_answered(database: str, serve: Any) -> None:
    server = serve(make_settings(database))
    with server.client() as client:
        say(client, "first", "t")
        # The thread's chat row (the turn's first statement), then its checkpoint head row
        # (the turn lease): each statement's session ends while it waits, and the turn is
        # answered all the same, once.
        for n, lock in enumerate((CHAT_LOCK, head_lock("t")), start=2):
            with dropped_while_waiting(database, lock):
                reply = say(client, f"turn {n}", "t")
            assert f"You have sent {n} messages" in answer_text(reply)
        thread = client.get("/api/threads/t")
        assert thread.status_code == 200, thread.text
        assert len(thread.json()["messages"]) == 6
