"""The thread lifecycle library (`ThreadStore`, retention) on the real embedded PostgreSQL:
listing and pagination, stats, complete deletion, erasure of a user, retention by age and by
count in batches, dry runs, concurrency guards, index use, and the server's retention task."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from langchain_core.messages import HumanMessage
from psycopg_pool import AsyncConnectionPool

from conftest import make_settings
from lakebase_memory.agent import build_graph
from lakebase_memory.agent.models.echo import EchoChatModel
from lakebase_memory.memory.lifecycle import (
    InvalidCursorError,
    ThreadStore,
    delete_thread_rows,
    list_query,
)
from lakebase_memory.memory.retention import (
    RETENTION_LOCK_KEY,
    RetentionPolicy,
    excess_batch_query,
    expired_batch_query,
)
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver
from lakebase_memory.memory.threads import chat_id_for
from lakebase_memory.server.retention import RetentionTask

# Every table a thread has rows in, with the column naming the thread.
THREAD_TABLES = {
    "checkpoints": "thread_id",
    "checkpoint_blobs": "thread_id",
    "checkpoint_writes": "thread_id",
    "ai_chatbot.checkpoint_messages": "thread_id",
    "ai_chatbot.checkpoint_threads": "thread_id",
    'ai_chatbot."Chat"': '"threadId"',
}


@pytest.fixture
async def store(db: str) -> AsyncIterator[ThreadStore]:
    async with ThreadStore.from_conn_string(db) as store:
        yield store


@pytest.fixture
async def pool(db: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(
        db, kwargs={"autocommit": True}, min_size=1, max_size=4, open=False
    ) as pool:
        yield pool


def add_thread(
    conn: psycopg.Connection,
    thread_id: str,
    user: str | None,
    *,
    age_days: float = 0.0,
    messages: int = 2,
    size: int = 100,
    chat: bool = True,
    saver_row: bool = True,
) -> None:
    """A thread with a row in every table, written in SQL (what the saver and server write)."""
    age = f"{age_days} days"
    if saver_row:
        conn.execute(
            "INSERT INTO ai_chatbot.checkpoint_threads (thread_id, user_id, created_at, "
            "updated_at, message_count, size_bytes) "
            "VALUES (%s, %s, now() - %s::interval, now() - %s::interval, %s, %s)",
            (thread_id, user, age, age, messages, size),
        )
    conn.execute(
        "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint, metadata) "
        "VALUES (%s, '', '1', '{}', '{}'), (%s, '', '2', '{}', '{}')",
        (thread_id, thread_id),
    )
    conn.execute(
        "INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) "
        "VALUES (%s, '', 'messages', '1', 'bytes', '\\x00')",
        (thread_id,),
    )
    conn.execute(
        "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, "
        "channel, type, blob, task_path) VALUES (%s, '', '2', 't', 0, 'c', 'bytes', '\\x00', '')",
        (thread_id,),
    )
    conn.execute(
        "INSERT INTO ai_chatbot.checkpoint_messages (thread_id, seq, message_id, type, blob) "
        "SELECT %s, s, 'm' || s, 'bytes', '\\x00' FROM generate_series(0, %s - 1) s",
        (thread_id, messages),
    )
    if chat and user is not None:
        add_chat(conn, thread_id, user, age)


def add_chat(conn: psycopg.Connection, thread_id: str, user: str, age: str = "0 days") -> None:
    """The server's chat of a thread: the "Chat" row, one "Message" and a "Vote" on it."""
    chat_id, message_id = chat_id_for(thread_id), uuid.uuid4()
    conn.execute(
        'INSERT INTO ai_chatbot."Chat" (id, "createdAt", title, "userId", "threadId", '
        '"updatedAt") VALUES (%s, now() - %s::interval, %s, %s, %s, now() - %s::interval)',
        (chat_id, age, f"title of {thread_id}", user, thread_id, age),
    )
    conn.execute(
        'INSERT INTO ai_chatbot."Message" (id, "chatId", role, parts, attachments, '
        "\"createdAt\") VALUES (%s, %s, 'user', '[]', '[]', now())",
        (message_id, chat_id),
    )
    conn.execute(
        'INSERT INTO ai_chatbot."Vote" ("chatId", "messageId", "isUpvoted") VALUES (%s, %s, true)',
        (chat_id, message_id),
    )


def seed(db: str, threads: list[tuple[str, str | None, float]], **options: Any) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        for thread_id, user, age in threads:
            add_thread(conn, thread_id, user, age_days=age, **options)


def rows_of(db: str, thread_id: str) -> dict[str, int]:
    """How many rows of the thread each table holds (plus the chat's messages and votes)."""
    with psycopg.connect(db) as conn:
        counts = {
            table: conn.execute(
                f"SELECT count(*) FROM {table} WHERE {column} = %s", (thread_id,)
            ).fetchone()[0]
            for table, column in THREAD_TABLES.items()
        }
        for table in ("Message", "Vote"):
            counts[table] = conn.execute(
                f'SELECT count(*) FROM ai_chatbot."{table}" WHERE "chatId" = %s',
                (chat_id_for(thread_id),),
            ).fetchone()[0]
    return counts


def thread_ids(db: str) -> set[str]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT thread_id FROM checkpoints UNION SELECT thread_id FROM "
            'ai_chatbot.checkpoint_threads UNION SELECT "threadId" FROM ai_chatbot."Chat"'
        ).fetchall()
    return {r[0] for r in rows}


async def turn(graph: Any, thread_id: str, user: str, text: str) -> None:
    config = {"configurable": {"thread_id": thread_id, "user_id": user}}
    await graph.ainvoke({"messages": [HumanMessage(text, id=str(uuid.uuid4()))]}, config)


# -- listing -------------------------------------------------------------------------------


async def test_list_pages_newest_first_per_user(db: str, store: ThreadStore) -> None:
    seed(db, [(f"ada-{i}", "ada", i) for i in range(7)] + [(f"bob-{i}", "bob", i) for i in (0, 1)])
    with psycopg.connect(db, autocommit=True) as conn:  # a tie on the time: ids break it
        conn.execute(
            "UPDATE ai_chatbot.checkpoint_threads SET updated_at = "
            "(SELECT updated_at FROM ai_chatbot.checkpoint_threads WHERE thread_id = 'ada-3') "
            "WHERE thread_id = 'ada-4'"
        )
    seen, cursor, pages = [], None, 0
    while True:
        page = await store.list("ada", limit=3, cursor=cursor)
        seen += [t.thread_id for t in page.threads]
        pages, cursor = pages + 1, page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert seen == ["ada-0", "ada-1", "ada-2", "ada-3", "ada-4", "ada-5", "ada-6"]
    first = (await store.list("ada", limit=1)).threads[0]
    assert (first.user_id, first.title, first.message_count, first.size_bytes) == (
        "ada", "title of ada-0", 2, 100
    )  # fmt: skip
    assert first.last_activity is not None and first.created_at is not None
    assert json.loads(json.dumps(first.to_json()))["last_activity"].endswith("Z")
    everyone: list[str] = []
    cursor = None
    while True:
        page = await store.list(limit=4, cursor=cursor)
        everyone += [t.thread_id for t in page.threads]
        if (cursor := page.next_cursor) is None:
            break
    assert sorted(everyone) == sorted([f"ada-{i}" for i in range(7)] + ["bob-0", "bob-1"])
    assert len(everyone) == len(set(everyone)) and everyone[-1] == "ada-6"
    assert [t.thread_id for t in (await store.list("bob")).threads] == ["bob-0", "bob-1"]
    assert (await store.list("nobody")).threads == []


async def test_bad_cursor_and_limit_are_refused(store: ThreadStore) -> None:
    with pytest.raises(InvalidCursorError, match="next_cursor"):
        await store.list("ada", cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit"):
        await store.list("ada", limit=0)


async def test_get_finds_threads_without_a_saver_row(db: str, store: ThreadStore) -> None:
    seed(db, [("legacy", "ada", 1)], saver_row=False)  # a thread of the stock saver
    legacy = await store.get("legacy")
    assert legacy is not None
    assert (legacy.user_id, legacy.title, legacy.message_count, legacy.size_bytes) == (
        "ada", "title of legacy", 0, 0
    )  # fmt: skip
    assert legacy.last_activity is not None
    seed(db, [("bare", None, 0)], saver_row=False, chat=False)  # checkpoints only
    assert (await store.get("bare")) is not None
    assert await store.get("never-existed") is None


async def test_stats_follow_real_turns(pool: AsyncConnectionPool, store: ThreadStore) -> None:
    """Needs the linear saver to maintain user_id, message_count and size_bytes."""
    graph = build_graph(EchoChatModel(), "Be brief.", AsyncLinearPostgresSaver(pool))
    await turn(graph, "real", "ada", "hello")
    one = await store.get("real")
    await turn(graph, "real", "ada", "again " * 50)
    two = await store.get("real")
    assert one is not None and two is not None
    assert (one.user_id, one.message_count, two.message_count) == ("ada", 2, 4)
    assert 0 < one.size_bytes < two.size_bytes
    assert two.last_activity >= one.last_activity  # type: ignore[operator]
    assert [t.thread_id for t in (await store.list("ada")).threads] == ["real"]


# -- deletion and erasure ------------------------------------------------------------------


async def test_delete_removes_every_row_of_the_thread(
    db: str, pool: AsyncConnectionPool, store: ThreadStore
) -> None:
    graph = build_graph(EchoChatModel(), "Be brief.", AsyncLinearPostgresSaver(pool))
    for text in ("one", "two"):
        await turn(graph, "doomed", "ada", text)
        await turn(graph, "kept", "ada", text)
    with psycopg.connect(db, autocommit=True) as conn:  # and the server's chat of it
        add_chat(conn, "doomed", "ada")
    before = rows_of(db, "doomed")
    assert all(before.values()), before  # a row in every table
    kept = rows_of(db, "kept")
    counts = await store.delete("doomed")
    assert set(rows_of(db, "doomed").values()) == {0}
    assert rows_of(db, "kept") == kept
    assert counts.threads == 1
    assert counts.checkpoints == before["checkpoints"]
    assert counts.checkpoint_messages == before["ai_chatbot.checkpoint_messages"]
    assert (counts.chats, counts.messages, counts.votes) == (1, 1, 1)
    assert (await store.delete("doomed")).threads == 0
    assert await store.get("doomed") is None


async def test_erase_user_takes_everything_of_one_user_in_batches(
    db: str, store: ThreadStore
) -> None:
    seed(db, [(f"ada-{i}", "ada", i) for i in range(5)] + [("bob-0", "bob", 0)])
    seed(db, [("ada-legacy", "ada", 3)], saver_row=False)  # only a chat says it is Ada's
    seed(db, [("ada-library", "ada", 0)], chat=False)  # only the saver's row says so
    erased = await store.erase_user("ada", batch_size=2)
    assert erased.threads == 7 and erased.chats == 6 and erased.checkpoints == 14
    assert erased.messages == erased.votes == 6
    assert thread_ids(db) == {"bob-0"}
    assert all(rows_of(db, "bob-0").values())
    assert (await store.erase_user("ada")).threads == 0


async def test_delete_thread_rows_is_all_or_nothing(db: str) -> None:
    seed(db, [("atomic", "ada", 0)])
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await delete_thread_rows(conn, ["atomic"])
                raise RuntimeError("crash before commit")
    assert all(rows_of(db, "atomic").values())


# -- retention -----------------------------------------------------------------------------


async def test_retention_by_age_in_batches(db: str, store: ThreadStore) -> None:
    seed(db, [(f"old-{i}", f"u{i % 2}", 10 + i) for i in range(7)])
    seed(db, [(f"new-{i}", f"u{i % 2}", 1) for i in range(3)])
    policy = RetentionPolicy(max_age_days=5)
    report = await store.apply_retention(policy, batch_size=3)
    assert (report.expired, report.excess, report.batches) == (7, 0, 3)
    assert report.deleted.threads == 7 and report.deleted.checkpoints == 14
    assert report.deleted.chats == report.deleted.votes == 7
    assert thread_ids(db) == {"new-0", "new-1", "new-2"}
    again = await store.apply_retention(policy, batch_size=3)
    assert (again.expired, again.batches) == (0, 0)


async def test_retention_by_count_keeps_each_users_newest(db: str, store: ThreadStore) -> None:
    seed(db, [(f"ada-{i}", "ada", i) for i in range(6)])
    seed(db, [(f"bob-{i}", "bob", i) for i in range(2)])
    seed(db, [(f"cy-{i}", "cy", i) for i in range(5)])
    seed(db, [("orphan", None, 50)], chat=False)  # no owner: the per-user rule cannot rank it
    report = await store.apply_retention(RetentionPolicy(max_threads_per_user=3), batch_size=2)
    assert (report.expired, report.excess, report.batches) == (0, 5, 3)
    assert thread_ids(db) == {"ada-0", "ada-1", "ada-2", "bob-0", "bob-1"} | {
        "cy-0", "cy-1", "cy-2", "orphan"
    }  # fmt: skip


async def test_dry_run_counts_the_same_and_changes_nothing(db: str, store: ThreadStore) -> None:
    seed(db, [(f"ada-{i}", "ada", i * 3) for i in range(6)])  # ages 0, 3, ..., 15 days
    seed(db, [(f"bob-{i}", "bob", i) for i in range(4)])
    policy = RetentionPolicy(max_age_days=7, max_threads_per_user=2)
    before = {t: rows_of(db, t) for t in thread_ids(db)}
    dry = await store.apply_retention(policy, dry_run=True)
    assert dry.dry_run and {t: rows_of(db, t) for t in thread_ids(db)} == before
    real = await store.apply_retention(policy, batch_size=2)
    # Age first (ada-3, -4, -5), then count among the rest (ada-2; bob-2, bob-3).
    assert (dry.expired, dry.excess) == (real.expired, real.excess) == (3, 3)
    assert thread_ids(db) == {"ada-0", "ada-1", "bob-0", "bob-1"}


async def test_retention_spares_locked_threads_and_live_turns(db: str, store: ThreadStore) -> None:
    seed(db, [(f"old-{i}", "ada", 30) for i in range(4)])
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE ai_chatbot.checkpoint_threads SET turn_id = gen_random_uuid(), "
            "turn_expires_at = now() + interval '1 minute' WHERE thread_id = 'old-0'"
        )
    with psycopg.connect(db) as writer:  # a writer holds old-1's row, as a saver write does
        writer.execute(
            "SELECT 1 FROM ai_chatbot.checkpoint_threads WHERE thread_id = 'old-1' FOR UPDATE"
        )
        report = await asyncio.wait_for(
            store.apply_retention(RetentionPolicy(max_age_days=1), batch_size=10), timeout=10
        )
        assert report.expired == 2
        writer.rollback()
    assert thread_ids(db) == {"old-0", "old-1"}
    assert (await store.apply_retention(RetentionPolicy(max_age_days=1))).expired == 1
    assert thread_ids(db) == {"old-0"}  # its turn is live


async def test_one_retention_pass_at_a_time(db: str, store: ThreadStore) -> None:
    seed(db, [("old", "ada", 30)])
    with psycopg.connect(db, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (RETENTION_LOCK_KEY,))
        report = await store.apply_retention(RetentionPolicy(max_age_days=1))
        assert report.skipped and report.expired == 0
        # Released now: a closed session's backend may take a moment to exit.
        other.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK_KEY,))
    assert (await store.apply_retention(RetentionPolicy(max_age_days=1))).expired == 1


async def test_keep_latest_checkpoint_trims_old_history(
    db: str, pool: AsyncConnectionPool, store: ThreadStore
) -> None:
    saver = AsyncLinearPostgresSaver(pool)
    graph = build_graph(EchoChatModel(), "Be brief.", saver)
    for text in ("one", "two", "three"):
        await turn(graph, "old", "ada", text)
        await turn(graph, "recent", "ada", text)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "UPDATE ai_chatbot.checkpoint_threads SET updated_at = now() - interval '9 days' "
            "WHERE thread_id = 'old'"
        )
    recent_checkpoints = rows_of(db, "recent")["checkpoints"]
    assert rows_of(db, "old")["checkpoints"] > 1
    policy = RetentionPolicy(max_age_days=7, keep_latest_checkpoint=True)
    assert (await store.apply_retention(policy, dry_run=True)).trimmed == 1
    report = await store.apply_retention(policy, batch_size=1)
    assert (report.trimmed, report.expired, report.deleted.threads) == (1, 0, 0)
    assert rows_of(db, "old")["checkpoints"] == 1
    assert rows_of(db, "recent")["checkpoints"] == recent_checkpoints
    state = await graph.aget_state({"configurable": {"thread_id": "old"}})
    assert len(state.values["messages"]) == 6  # the conversation is intact
    assert (await store.apply_retention(policy)).trimmed == 0  # trimmed once, not every pass


def test_policy_validation() -> None:
    assert not RetentionPolicy().active
    with pytest.raises(ValueError, match="max_age_days"):
        RetentionPolicy(max_age_days=0)
    with pytest.raises(ValueError, match="at least 1"):
        RetentionPolicy(max_threads_per_user=0)
    with pytest.raises(ValueError, match="set it too"):
        RetentionPolicy(keep_latest_checkpoint=True)
    assert "90 days" in RetentionPolicy(max_age_days=90).describe()


# -- index use -----------------------------------------------------------------------------


def plan(conn: psycopg.Connection, query: Any, params: dict[str, Any]) -> str:
    rows = conn.execute(psycopg.sql.SQL("EXPLAIN ") + query, params).fetchall()
    return "\n".join(r[0] for r in rows)


async def test_listing_and_retention_use_the_indexes(db: str) -> None:
    """20k threads of 200 users, analysed: the planner picks the indexes on its own."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ai_chatbot.checkpoint_threads (thread_id, user_id, updated_at, "
            "message_count, size_bytes) SELECT 't' || i, 'user-' || (i % 200), "
            "now() - i * interval '1 minute', i % 50, i * 10 FROM generate_series(1, 20000) i"
        )
        conn.execute("ANALYZE ai_chatbot.checkpoint_threads")
        at = conn.execute("SELECT now() - interval '3 days'").fetchone()[0]
        for user, after in (("user-7", None), ("user-7", (at, "t99")), (None, (at, "t99"))):
            query, params = list_query(user, 21, after)
            shown = plan(conn, query, params)
            index = "user_activity_idx" if user else "checkpoint_threads_activity_idx"
            assert index in shown and "Seq Scan on checkpoint_threads" not in shown, shown
            assert "Sort" not in shown, shown  # the index gives the order
        expired = plan(conn, expired_batch_query(), {"cutoff": at, "n": 500})
        assert "checkpoint_threads_activity_idx" in expired, expired
        assert "Seq Scan on checkpoint_threads" not in expired, expired
        excess = plan(
            conn, excess_batch_query(), {"from_user": "", "floor": at, "keep": 50, "n": 500}
        )
        assert "user_activity_idx" in excess and "Seq Scan" not in excess, excess


# -- the server's retention task -------------------------------------------------------------


async def test_retention_task_runs_in_background_and_survives_errors(
    db: str, pool: AsyncConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    assert RetentionTask.start(pool, make_settings(db)) is None  # no rule: nothing runs
    seed(db, [("old", "ada", 3), ("new", "ada", 0)])
    settings = make_settings(db, memory_retention_days=1, memory_retention_interval_seconds=0.05)
    task = RetentionTask.start(pool, settings)
    assert task is not None
    try:
        for _ in range(200):
            if task.passes >= 2:
                break
            await asyncio.sleep(0.05)
        assert thread_ids(db) == {"new"}
    finally:
        await task.stop()
    broken = RetentionTask(pool, RetentionPolicy(max_age_days=1), checkpoint_schema="nowhere")
    seed(db, [("old-2", "ada", 3)])
    assert await broken.run_once() is None  # logged, not raised
    assert "retention pass failed" in caplog.text


def test_server_applies_retention_at_start_up(db: str, serve) -> None:
    seed(db, [("old", "local-user", 30), ("new", "local-user", 0)])
    server = serve(make_settings(db, memory_retention_days=7))
    with server.client() as client:
        for _ in range(100):
            listed = [t["id"] for t in client.get("/api/threads").json()["threads"]]
            if listed == ["new"]:
                break
            time.sleep(0.05)
    assert listed == ["new"] and thread_ids(db) == {"new"}
    assert server.app.state.runtime.retention.passes >= 1


async def test_a_thread_deleted_during_a_turn_stays_deleted(
    db: str, pool: AsyncConnectionPool, store: ThreadStore
) -> None:
    """Relies on the saver's turn lease: the late write finds the thread's row gone."""
    from lakebase_memory.memory.saver.ops import StaleTurnError

    saver = AsyncLinearPostgresSaver(pool)
    graph = build_graph(EchoChatModel(), "Be brief.", saver)
    await turn(graph, "late", "ada", "hello")
    config = {"configurable": {"thread_id": "late", "user_id": "ada"}}
    with pytest.raises(StaleTurnError, match="deleted"):
        async with saver.aturn(config) as leased:
            assert (await store.delete("late")).threads == 1
            message = HumanMessage("too late", id=str(uuid.uuid4()))
            await graph.ainvoke({"messages": [message]}, leased)
    assert await store.get("late") is None and thread_ids(db) == set()


def test_thread_listing_benchmark_runs(pg_admin: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark at a tiny size (its shape, never its speed)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import thread_listing

    argv = ["--database-url", pg_admin, "--threads", "2000", "--users", "20", "--repeat", "2"]
    result = thread_listing.main([*argv, "--json"])
    assert json.loads(capsys.readouterr().out)["threads"] == 2000
    assert all(ms > 0 for ms in result["timings_ms"].values())
    passes = {p["pass"]: p["threads"] for p in result["retention"]}
    assert passes["age rule (1% expired), dry run"] >= 20
    assert passes["both rules, nothing left"] == 0
    assert isinstance(result["checks"][0]["passed"], bool)


# -- lock order: maintenance paths never deadlock each other ---------------------------------


async def waiting_for_locks(watcher: psycopg.Connection, count: int) -> None:
    """Until `count` sessions of this database wait on a row lock (polled without blocking
    the event loop, on an autocommit session: pg_stat_activity is frozen in a transaction)."""
    for _ in range(400):
        waiting = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]
        if waiting >= count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{count} sessions never waited on a lock")


async def test_a_delete_and_a_run_deletion_queue_on_overlapping_threads(
    db: str, pool: AsyncConnectionPool, store: ThreadStore
) -> None:
    """Deleting [a, b] and deleting a run that touched [b, a] lock the threads' head rows
    in one order, so the later one waits instead of PostgreSQL aborting one of them.

    Made deterministic with a third session that holds b's head row (as a writer does):
    the delete queues on b first, then the run deletion arrives. Before the common order,
    the delete's scan (physical order: b's row was written first) held nothing but waited
    for b while the run deletion took a (its Python-sorted order) and waited for b too;
    once b was free the delete took it and waited for a: `deadlock detected`.
    """
    seed(db, [("thread-b", "ada", 0), ("thread-a", "ada", 0)])  # b's rows come first
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("""UPDATE checkpoints SET metadata = '{"run_id": "run-1"}'""")
    saver = AsyncLinearPostgresSaver(pool)
    with psycopg.connect(db, autocommit=True) as watcher, psycopg.connect(db) as writer:
        writer.execute(
            "SELECT 1 FROM ai_chatbot.checkpoint_threads WHERE thread_id = 'thread-b' FOR UPDATE"
        )
        deleting = asyncio.create_task(store.delete_many(["thread-a", "thread-b"]))
        await waiting_for_locks(watcher, 1)
        runs = asyncio.create_task(saver.adelete_for_runs(["run-1"]))
        await waiting_for_locks(watcher, 2)
        writer.rollback()
        results = await asyncio.wait_for(
            asyncio.gather(deleting, runs, return_exceptions=True), timeout=30
        )
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert results[0].threads == 2 and results[0].checkpoints == 4
    # The run deletion came second: it found the threads gone and did not bring them back.
    assert thread_ids(db) == set()


async def test_overlapping_maintenance_in_opposite_orders_never_deadlocks(
    db: str, pool: AsyncConnectionPool
) -> None:
    """Deletes, erasure, run deletions and copies of the same two threads, named in opposite
    orders, all at once, round after round: each waits for the others, none is aborted."""
    saver = AsyncLinearPostgresSaver(pool)
    store = ThreadStore(pool)
    for round_ in range(12):
        first, second = f"T-{round_}", f"t-{round_}"  # case: Python and a collation differ
        rows = [(first, "ada", 0), (second, "ada", 0)]
        seed(db, rows[:: 1 if round_ % 2 else -1])  # either one's rows written first
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(
                "UPDATE checkpoints SET metadata = jsonb_build_object('run_id', %s::text) "
                "WHERE thread_id = ANY(%s)",
                (f"run-{round_}", [first, second]),
            )
        results = await asyncio.wait_for(
            asyncio.gather(
                store.delete_many([first, second]),
                saver.adelete_for_runs([f"run-{round_}"]),
                saver.acopy_thread(second, first),  # refused while `first` has checkpoints
                store.erase_user("ada"),
                return_exceptions=True,
            ),
            timeout=30,
        )
        failures = [
            r
            for r in results
            if isinstance(r, BaseException)
            and not (isinstance(r, ValueError) and "already has checkpoints" in str(r))
        ]
        assert not failures, failures
        # Nothing comes back, not even a head row a waiting operation created.
        for thread_id in (first, second):
            assert set(rows_of(db, thread_id).values()) == {0}, thread_id
