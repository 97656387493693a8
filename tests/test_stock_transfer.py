"""Threads in and out of LangGraph's stock Postgres format, on the real embedded PostgreSQL.

Stock threads are written by LangGraph's own `AsyncPostgresSaver` (long conversations, an
interrupt left pending, a forked history, a subgraph's namespace); an import must leave the
linear saver reading exactly what it read before, smaller; an export must let LangGraph's
savers read exactly what the linear saver read.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import typer
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool
from typer.testing import CliRunner

from conftest import create_database
from lakebase_memory.agent import build_graph
from lakebase_memory.agent.models.echo import EchoChatModel
from lakebase_memory.cli.threads_transfer import export_stock, import_stock
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver
from lakebase_memory.memory.saver.codec import REF_TYPES
from lakebase_memory.memory.saver.transfer import (
    TargetUnavailableError,
    UnknownThreadError,
    export_stock_threads,
    import_stock_threads,
    thread_state,
)
from lakebase_memory.schema import ensure_schema
from saver_fixtures import asking_graph, config

TURNS = 30
STOCK_THREADS = ("long", "asking", "forked", "nested")


# -- building threads ------------------------------------------------------------------------


async def say(graph: Any, thread_id: str, text: str) -> list[BaseMessage]:
    message = HumanMessage(text, id=str(uuid.uuid4()))
    return (await graph.ainvoke({"messages": [message]}, config(thread_id)))["messages"]


def nested_graph(saver: Any) -> Any:
    """A subgraph node: its checkpoints live in their own namespace of the thread."""

    def inner_reply(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [AIMessage(f"inner {len(state['messages'])}")]}

    inner = StateGraph(MessagesState)
    inner.add_node("reply", inner_reply)
    inner.add_edge(START, "reply")
    inner.add_edge("reply", END)
    outer = StateGraph(MessagesState)
    outer.add_node("child", inner.compile())
    outer.add_edge(START, "child")
    outer.add_edge("child", END)
    return outer.compile(checkpointer=saver)


async def write_threads(saver: Any, *, turns: int = TURNS) -> None:
    """The four kinds of thread, with whichever saver is given."""
    agent = build_graph(EchoChatModel(), "Be brief.", saver)
    for turn in range(turns):
        await say(agent, "long", f"message {turn} " + "x" * 200)
    await say(asking_graph(saver), "asking", "hi")  # left waiting at the interrupt
    for text in ("one", "two", "three"):
        await say(agent, "forked", text)
    history = [s async for s in agent.aget_state_history(config("forked"))]
    after_one = next(s for s in history if len(s.values.get("messages", [])) == 2 and not s.next)
    await agent.ainvoke({"messages": [HumanMessage("branch", id="branch")]}, after_one.config)
    for text in ("a", "b"):
        await say(nested_graph(saver), "nested", text)


async def write_stock_threads(database: str, *, turns: int = TURNS) -> None:
    async with AsyncPostgresSaver.from_conn_string(database) as stock:
        await write_threads(stock, turns=turns)


# -- reading threads -------------------------------------------------------------------------


async def checkpoints(saver: Any, thread_id: str) -> list[tuple[Any, ...]]:
    """Everything a saver returns for a thread, in one order whatever the saver's."""
    items = [item async for item in saver.alist(config(thread_id))]
    items.sort(key=lambda i: (i.config["configurable"]["checkpoint_ns"], i.checkpoint["id"]))
    return [
        (
            item.config["configurable"],
            (item.parent_config or {}).get("configurable"),
            item.checkpoint,
            item.metadata,
            item.pending_writes,
        )
        for item in items
    ]


def sync_checkpoints(saver: PostgresSaver, thread_id: str) -> list[tuple[Any, ...]]:
    items = sorted(
        saver.list(config(thread_id)),
        key=lambda i: (i.config["configurable"]["checkpoint_ns"], i.checkpoint["id"]),
    )
    return [
        (
            item.config["configurable"],
            (item.parent_config or {}).get("configurable"),
            item.checkpoint,
            item.metadata,
            item.pending_writes,
        )
        for item in items
    ]


async def state_history(graph: Any, thread_id: str) -> list[tuple[Any, ...]]:
    """The graph's view: values, next nodes, interrupts, parent chain, newest first."""
    return [
        (
            s.config["configurable"]["checkpoint_id"],
            (s.parent_config or {}).get("configurable", {}).get("checkpoint_id"),
            s.values,
            s.next,
            [i.value for i in s.interrupts],
        )
        async for s in graph.aget_state_history(config(thread_id))
    ]


def rows(database: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(database) as conn:
        return conn.execute(query, params).fetchall()


def write_rows(database: str, thread_id: str) -> list[tuple[Any, ...]]:
    return rows(
        database,
        "SELECT checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel "
        "FROM checkpoint_writes WHERE thread_id = %s ORDER BY 1, 2, 3, 5",
        thread_id,
    )


def reference_rows(database: str, thread_id: str) -> int:
    """Rows only the linear format has: log references, log entries, the head row."""
    return int(
        rows(
            database,
            "SELECT (SELECT count(*) FROM checkpoint_blobs WHERE thread_id = %s AND type = ANY(%s))"
            " + (SELECT count(*) FROM checkpoint_writes WHERE thread_id = %s AND type = ANY(%s))"
            " + (SELECT count(*) FROM ai_chatbot.checkpoint_messages WHERE thread_id = %s)"
            " + (SELECT count(*) FROM ai_chatbot.checkpoint_threads WHERE thread_id = %s)",
            thread_id,
            list(REF_TYPES),
            thread_id,
            list(REF_TYPES),
            thread_id,
            thread_id,
        )[0][0]
    )


def message_blob_types(database: str, thread_id: str) -> set[str]:
    return {
        r[0]
        for r in rows(
            database,
            "SELECT DISTINCT type FROM checkpoint_blobs WHERE thread_id = %s "
            "AND channel = 'messages'",
            thread_id,
        )
    }


def inline_references(database: str, thread_id: str) -> int:
    return rows(
        database,
        "SELECT count(*) FROM checkpoints WHERE thread_id = %s "
        "AND checkpoint -> 'channel_values' -> 'messages' ? 'lakebase.messages'",
        thread_id,
    )[0][0]


def head_column_exists(database: str, column: str) -> bool:
    return bool(
        rows(
            database,
            "SELECT 1 FROM information_schema.columns WHERE table_schema = 'ai_chatbot' "
            "AND table_name = 'checkpoint_threads' AND column_name = %s",
            column,
        )
    )


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
async def pool(db: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(db, kwargs={"autocommit": True}, min_size=1) as pool:
        yield pool


@pytest.fixture
async def linear(pool: AsyncConnectionPool) -> AsyncLinearPostgresSaver:
    return AsyncLinearPostgresSaver(pool)


# -- import ----------------------------------------------------------------------------------


async def test_import_keeps_every_checkpoint_and_shrinks_the_thread(
    db: str, pool: AsyncConnectionPool, linear: AsyncLinearPostgresSaver
) -> None:
    await write_stock_threads(db)
    before = {t: await checkpoints(linear, t) for t in STOCK_THREADS}
    writes_before = {t: write_rows(db, t) for t in STOCK_THREADS}
    assert any(c["checkpoint_ns"] for c, *_ in before["nested"]), "a subgraph's namespace"
    assert any(w for *_, w in before["asking"]), "the interrupt is a pending write"
    parents = [p["checkpoint_id"] for _, p, *_ in before["forked"] if p]
    assert len(set(parents)) < len(parents), "two checkpoints share a parent: a fork"
    assert message_blob_types(db, "long") == {"msgpack"}

    seen: list[str] = []
    report = await import_stock_threads(pool, on_thread=lambda r: seen.append(r.thread_id))

    assert sorted(r.thread_id for r in report.moved) == sorted(STOCK_THREADS) == sorted(seen)
    assert not report.skipped and not report.failed
    for thread_id in STOCK_THREADS:
        assert await checkpoints(linear, thread_id) == before[thread_id], thread_id
        assert write_rows(db, thread_id) == writes_before[thread_id], thread_id
    assert message_blob_types(db, "long") == set()  # references in the checkpoints' JSON
    assert inline_references(db, "long") > 0
    # Each message once: 30 questions and 30 answers.
    logged = "SELECT count(*) FROM ai_chatbot.checkpoint_messages WHERE thread_id = 'long'"
    assert rows(db, logged) == [(2 * TURNS,)]
    long = next(r for r in report.moved if r.thread_id == "long")
    assert long.checkpoints == len(before["long"]) and long.bytes_after is not None
    # Stock: ~250 KB, the list rewritten at each of 90 checkpoints (compressed by TOAST);
    # linear: ~150 KB, mostly the checkpoints' own JSON. The gap widens with every turn.
    assert long.bytes_after < 0.75 * long.bytes_before, (long.bytes_before, long.bytes_after)
    assert report.bytes_after is not None and report.bytes_after < report.bytes_before

    # The graphs carry on with the linear saver: the interrupt resumes, the long thread grows.
    done = await asking_graph(linear).ainvoke(Command(resume="Ada"), config("asking"))
    assert [m.content for m in done["messages"]] == ["hi", "hello Ada"]
    messages = await say(build_graph(EchoChatModel(), "Be brief.", linear), "long", "again")
    assert f"You have sent {TURNS + 1} messages" in messages[-1].content


async def test_import_again_skips_and_named_threads_only(
    db: str, pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(thread_state, "PROBE_PAGE", 2)  # look through many pages of rows
    await write_stock_threads(db, turns=3)
    first = await import_stock_threads(pool, ["long", "forked"])
    assert [r.thread_id for r in first.moved] == ["long", "forked"]
    assert message_blob_types(db, "asking") == {"msgpack"}, "not named: not imported"
    again = await import_stock_threads(pool, batch_size=1)  # all, one id per page
    assert sorted(r.thread_id for r in again.moved) == ["asking", "nested"]
    assert {r.thread_id: r.reason for r in again.skipped} == {
        "forked": "already in the linear format",
        "long": "already in the linear format",
    }
    third = await import_stock_threads(pool)
    assert not third.moved and len(third.skipped) == len(STOCK_THREADS)


async def test_import_dry_run_changes_nothing(db: str, pool: AsyncConnectionPool) -> None:
    await write_stock_threads(db, turns=5)
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        report = await import_stock_threads(conn, ["long"], dry_run=True)
    assert report.dry_run and [r.thread_id for r in report.moved] == ["long"]
    assert report.bytes_after is not None and report.bytes_after < report.bytes_before
    assert message_blob_types(db, "long") == {"msgpack"}
    assert reference_rows(db, "long") == 0


async def test_import_of_a_thread_both_savers_wrote(
    db: str, pool: AsyncConnectionPool, linear: AsyncLinearPostgresSaver
) -> None:
    async with AsyncPostgresSaver.from_conn_string(db) as stock:
        agent = build_graph(EchoChatModel(), "Be brief.", stock)
        for turn in range(4):
            await say(agent, "mixed", f"stock {turn}")
    agent = build_graph(EchoChatModel(), "Be brief.", linear)
    for turn in range(3):
        await say(agent, "mixed", f"linear {turn}")
    before = await checkpoints(linear, "mixed")
    kept = head_column_exists(db, "created_at")
    if kept:
        created = rows(
            db, "SELECT created_at FROM ai_chatbot.checkpoint_threads WHERE thread_id = 'mixed'"
        )
    report = await import_stock_threads(pool, ["mixed"])
    assert [r.thread_id for r in report.moved] == ["mixed"]
    assert await checkpoints(linear, "mixed") == before
    assert message_blob_types(db, "mixed") == set()  # references in the checkpoints' JSON
    assert inline_references(db, "mixed") > 0
    if kept:  # the thread's creation time survives its rewrite
        assert created == rows(
            db, "SELECT created_at FROM ai_chatbot.checkpoint_threads WHERE thread_id = 'mixed'"
        )
    # The saver that wrote it before carries on (its cached log is of the old generation).
    messages = await say(agent, "mixed", "after")
    assert "You have sent 8 messages" in messages[-1].content
    logged = "SELECT count(*) FROM ai_chatbot.checkpoint_messages WHERE thread_id = 'mixed'"
    assert rows(db, logged) == [(16,)], "each message once"


async def test_an_imported_stock_thread_keeps_its_age_and_owner(
    db: str, pool: AsyncConnectionPool
) -> None:
    if not head_column_exists(db, "user_id"):
        pytest.skip("no lifecycle columns on ai_chatbot.checkpoint_threads")
    await write_stock_threads(db, turns=2)
    with psycopg.connect(db) as conn:  # a month-old conversation of Ada's
        conn.execute(
            "UPDATE checkpoints SET checkpoint = jsonb_set(checkpoint, '{ts}', "
            "to_jsonb(((checkpoint->>'ts')::timestamptz - interval '30 days')::text)) "
            "WHERE thread_id = 'long'"
        )
        conn.execute(
            'INSERT INTO ai_chatbot."Chat" (id, "createdAt", title, "userId", "threadId", '
            "\"updatedAt\") VALUES (gen_random_uuid(), now(), 'long', 'ada@example.com', "
            "'long', now())"
        )
    await import_stock_threads(pool, ["long"])
    head = rows(
        db,
        "SELECT now() - created_at > interval '29 days', now() - updated_at > interval '29 days',"
        " user_id FROM ai_chatbot.checkpoint_threads WHERE thread_id = 'long'",
    )
    assert head == [(True, True, "ada@example.com")]


async def test_a_thread_in_the_middle_of_a_turn_is_skipped(
    db: str, pool: AsyncConnectionPool
) -> None:
    if not head_column_exists(db, "turn_expires_at"):
        pytest.skip("no turn leases on ai_chatbot.checkpoint_threads")
    await write_stock_threads(db, turns=2)
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO ai_chatbot.checkpoint_threads (thread_id, turn_id, turn_expires_at) "
            "VALUES ('long', gen_random_uuid(), now() + interval '1 minute')"
        )
    report = await import_stock_threads(pool, ["long"])
    assert not report.moved and "a turn is running" in report.skipped[0].reason
    assert message_blob_types(db, "long") == {"msgpack"}


async def test_unknown_threads_change_nothing(db: str, pool: AsyncConnectionPool) -> None:
    await write_stock_threads(db, turns=2)
    with pytest.raises(UnknownThreadError, match="'nope'"):
        await import_stock_threads(pool, ["long", "nope"])
    assert message_blob_types(db, "long") == {"msgpack"}
    with pytest.raises(UnknownThreadError, match="'nope'"):
        await export_stock_threads(pool, ["nope"])


# -- export ----------------------------------------------------------------------------------


async def test_export_in_place_is_read_by_langgraphs_savers(
    db: str, pool: AsyncConnectionPool, linear: AsyncLinearPostgresSaver
) -> None:
    await write_threads(linear)
    graph = build_graph(EchoChatModel(), "Be brief.", linear)
    before = {t: await checkpoints(linear, t) for t in STOCK_THREADS}
    history = await state_history(graph, "forked")
    assert reference_rows(db, "long") > 0

    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        report = await export_stock_threads(conn, list(STOCK_THREADS))

    assert sorted(r.thread_id for r in report.moved) == sorted(STOCK_THREADS)
    for thread_id in STOCK_THREADS:
        assert reference_rows(db, thread_id) == 0, thread_id
    assert message_blob_types(db, "long") == {"msgpack"}
    async with AsyncPostgresSaver.from_conn_string(db) as stock:
        for thread_id in STOCK_THREADS:
            assert await checkpoints(stock, thread_id) == before[thread_id], thread_id
        stock_graph = build_graph(EchoChatModel(), "Be brief.", stock)
        assert await state_history(stock_graph, "forked") == history
        # LangGraph's saver carries on with the exported threads.
        done = await asking_graph(stock).ainvoke(Command(resume="Ada"), config("asking"))
        assert [m.content for m in done["messages"]] == ["hi", "hello Ada"]
        messages = await say(stock_graph, "long", "again")
        assert f"You have sent {TURNS + 1} messages" in messages[-1].content
    with PostgresSaver.from_conn_string(db) as sync_stock:
        assert sync_checkpoints(sync_stock, "nested") == before["nested"]

    again = await export_stock_threads(pool)
    assert not again.moved
    assert {r.reason for r in again.skipped} == {"already in the stock format"}


async def test_import_then_export_gives_back_the_stock_thread(
    db: str, pool: AsyncConnectionPool
) -> None:
    await write_stock_threads(db, turns=4)
    async with AsyncPostgresSaver.from_conn_string(db) as stock:
        original = {t: await checkpoints(stock, t) for t in STOCK_THREADS}
    writes = {t: write_rows(db, t) for t in STOCK_THREADS}
    await import_stock_threads(pool)
    report = await export_stock_threads(pool, dry_run=True)
    assert len(report.moved) == len(STOCK_THREADS) and reference_rows(db, "long") > 0
    await export_stock_threads(pool)
    async with AsyncPostgresSaver.from_conn_string(db) as stock:
        for thread_id in STOCK_THREADS:
            assert await checkpoints(stock, thread_id) == original[thread_id], thread_id
            assert write_rows(db, thread_id) == writes[thread_id]


async def test_export_to_another_database(
    db: str, pool: AsyncConnectionPool, linear: AsyncLinearPostgresSaver, pg_admin: str
) -> None:
    await write_threads(linear, turns=6)
    before = {t: await checkpoints(linear, t) for t in STOCK_THREADS}
    target = create_database(pg_admin)

    dry = await export_stock_threads(pool, target=target, dry_run=True)
    assert len(dry.moved) == len(STOCK_THREADS) and dry.bytes_after is None
    assert rows(target, "SELECT to_regclass('checkpoints')") == [(None,)], "dry run: no tables"

    report = await export_stock_threads(pool, ["long", "asking", "forked"], target=target)
    assert len(report.moved) == 3 and report.bytes_after is not None
    assert "password" not in report.target and report.target.startswith("postgresql://")
    with PostgresSaver.from_conn_string(target) as stock:
        for thread_id in ("long", "asking", "forked"):
            assert sync_checkpoints(stock, thread_id) == before[thread_id], thread_id
    assert reference_rows(db, "long") > 0, "the source is unchanged"
    assert await checkpoints(linear, "long") == before["long"]

    again = await export_stock_threads(pool, target=target)
    assert [r.thread_id for r in again.moved] == ["nested"]
    assert {r.thread_id for r in again.skipped} == {"long", "asking", "forked"}
    assert "already has this thread" in again.skipped[0].reason
    async with AsyncPostgresSaver.from_conn_string(target) as stock:
        assert await checkpoints(stock, "nested") == before["nested"]


async def test_export_to_an_unreachable_database(db: str, pool: AsyncConnectionPool) -> None:
    await write_stock_threads(db, turns=1)
    nowhere = make_conninfo(db, dbname="no_such_database", password="secret")
    with pytest.raises(TargetUnavailableError, match="no_such_database") as raised:
        await export_stock_threads(pool, ["long"], target=nowhere)
    assert "secret" not in str(raised.value)


# -- the command line ------------------------------------------------------------------------

runner = CliRunner()


def cli() -> typer.Typer:
    """The two commands as `cli/threads.py` registers them, in a Typer of their own."""
    app = typer.Typer()
    app.command("import-stock")(import_stock)
    app.command("export-stock")(export_stock)
    return app


@pytest.fixture
def memory_db(database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    monkeypatch.chdir(tmp_path)  # no .env files of the project's
    monkeypatch.setenv("DATABASE_URL", database)
    asyncio.run(ensure_schema(database, "public"))
    asyncio.run(write_stock_threads(database, turns=3))
    return database


def test_cli_import_and_export(memory_db: str, pg_admin: str) -> None:
    dry = runner.invoke(cli(), ["import-stock", "long", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "✓ long:" in dry.output and "would be imported" in dry.output
    assert "dry run: nothing was changed" in dry.output
    assert message_blob_types(memory_db, "long") == {"msgpack"}

    done = runner.invoke(cli(), ["import-stock", "--all", "--batch-size", "2", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["moved"] == len(STOCK_THREADS) and report["direction"] == "import"
    assert report["bytes_after"] < report["bytes_before"]

    again = runner.invoke(cli(), ["import-stock", "--all"])
    assert again.exit_code == 0, again.output
    assert "- long: skipped, already in the linear format" in again.output
    assert f"0 thread(s) imported, {len(STOCK_THREADS)} skipped" in again.output

    target = create_database(pg_admin)
    copied = runner.invoke(cli(), ["export-stock", "long", "asking", "--to", target])
    assert copied.exit_code == 0, copied.output
    assert "2 thread(s) exported (postgresql://" in copied.output
    exported = runner.invoke(cli(), ["export-stock", "--all"])
    assert exported.exit_code == 0, exported.output
    assert f"{len(STOCK_THREADS)} thread(s) exported (in place)" in exported.output
    assert reference_rows(memory_db, "long") == 0


def flat(output: str) -> str:
    """Typer's usage errors come in a box, wrapped: the words only."""
    return " ".join(output.replace("│", " ").split())


def test_cli_says_what_to_do(memory_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    neither = runner.invoke(cli(), ["import-stock"])
    assert neither.exit_code == 2
    assert "name the threads to move (their ids), or pass --all" in flat(neither.output)
    both = runner.invoke(cli(), ["export-stock", "long", "--all"])
    assert both.exit_code == 2 and "not both" in flat(both.output)

    unknown = runner.invoke(cli(), ["import-stock", "long", "nope"])
    assert unknown.exit_code == 1
    assert "no checkpoints for thread(s) 'nope'" in unknown.output
    assert "lakebase-memory threads list" in unknown.output
    assert message_blob_types(memory_db, "long") == {"msgpack"}, "nothing moved"

    nowhere = make_conninfo(memory_db, dbname="no_such_database")
    unreachable = runner.invoke(cli(), ["export-stock", "long", "--to", nowhere])
    assert unreachable.exit_code == 1
    assert "cannot connect to the export target" in unreachable.output
    assert "no_such_database" in unreachable.output

    monkeypatch.setenv("DATABASE_URL", make_conninfo(memory_db, user="nobody"))
    refused = runner.invoke(cli(), ["import-stock", "--all"])
    assert refused.exit_code == 1 and 'role "nobody" does not exist' in refused.output
