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
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from conftest import answer_text, make_settings, say
from lakebase_memory.database.reconnect import connection_lost
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver, LinearPostgresSaver
from lakebase_memory.memory.threads import ThreadCatalogue
from saver_fixtures import POOL_KWARGS, agent, checkpoint_rows, config

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


async def test_a_turn_lease_taken_again_by_the_same_turn_is_its_own(
    saver: AsyncLinearPostgresSaver,
) -> None:
    # What a run repeated after a drop does when its first run had committed: the same turn
    # id asks again, and must not find the thread busy with itself.
    turn_id = str(uuid.uuid4())
    for _ in range(2):
        taken = await saver._run(lambda _: saver._op_acquire_turn("t", None, 60, turn_id))
        assert taken == turn_id


async def test_a_repeated_checkpoint_write_adds_nothing(
    saver: AsyncLinearPostgresSaver, database: str
) -> None:
    # What a write repeated after a drop does when its first run had committed.
    graph = agent(saver)
    await turn(graph, "t", "hello")
    latest = await saver.aget_tuple(config("t"))
    assert latest is not None
    before = checkpoint_rows(database, "t")
    fresh = AsyncLinearPostgresSaver(saver.conn)  # nothing cached: it asks the database
    for _ in range(2):
        await fresh.aput(
            latest.parent_config or config("t"), latest.checkpoint, latest.metadata, {}
        )
    assert checkpoint_rows(database, "t") == before
    again = await fresh.aget_tuple(config("t"))
    assert again is not None and again.checkpoint == latest.checkpoint


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


async def test_a_thread_claim_whose_connection_drops_is_made_again(db: str) -> None:
    async with AsyncConnectionPool(
        db, kwargs={**POOL_KWARGS, "row_factory": dict_row}, min_size=1, max_size=4, open=False
    ) as pool:
        threads = ThreadCatalogue(pool)
        await threads.claim("t", "ann", "hello")
        with dropped_while_waiting(db, CHAT_LOCK):
            claimed = await threads.claim("t", "ann", "again")
        assert claimed.thread_id == "t" and claimed.user_id == "ann"
        assert [t.thread_id for t in (await threads.list("ann")).threads] == ["t"]


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
