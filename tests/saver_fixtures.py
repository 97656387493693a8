"""Fixtures and helpers for tests of the linear savers on the real embedded PostgreSQL (loaded
from conftest.py's `pytest_plugins`): a pool and a set-up saver on the test's database, the
database with the app's schema, the echo agent, configs, a graph that stops at an interrupt,
and the rows a thread has in the checkpoint tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import interrupt
from psycopg_pool import AsyncConnectionPool

from lakebase_memory.agent import build_graph
from lakebase_memory.agent.models.echo import EchoChatModel
from lakebase_memory.database.pool import CONNECTION_KWARGS
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver
from lakebase_memory.schema import ensure_schema

POOL_KWARGS = {"autocommit": True}
# Every table the linear saver writes a thread's rows to.
CHECKPOINT_TABLES = (
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "ai_chatbot.checkpoint_messages",
    "ai_chatbot.checkpoint_threads",
)


@pytest.fixture
async def pool(database: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(
        database, kwargs=POOL_KWARGS, min_size=2, max_size=8, open=False
    ) as pool:
        yield pool


@pytest.fixture
async def app_pool(db: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool on the app's schema, with the app pool's connection settings."""
    async with AsyncConnectionPool(
        db, kwargs=CONNECTION_KWARGS, min_size=1, max_size=4, open=False
    ) as pool:
        yield pool


@pytest.fixture
async def saver(pool: AsyncConnectionPool) -> AsyncLinearPostgresSaver:
    saver = AsyncLinearPostgresSaver(pool)
    await saver.setup()
    return saver


@pytest.fixture
async def db(database: str) -> str:
    """The test's database with the app's schema (`ensure_schema`)."""
    await ensure_schema(database, "public")
    return database


def agent(saver: Any) -> Any:
    return build_graph(EchoChatModel(), "Be brief.", saver)


def config(thread_id: str, **extra: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, **extra}}


def one(database: str, query: str, *params: object) -> Any:
    with psycopg.connect(database) as conn:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None


def asking_graph(saver: Any) -> Any:
    """A graph that stops at an interrupt: the thread keeps a pending interrupt write."""

    def ask(state: MessagesState) -> dict[str, list[BaseMessage]]:
        name = interrupt("what is your name?")
        return {"messages": [AIMessage(f"hello {name}", id=f"greet-{name}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=saver)


def checkpoint_rows(database: str, thread_id: str) -> dict[str, int]:
    """How many rows the thread has in each of `CHECKPOINT_TABLES`."""
    with psycopg.connect(database) as conn:
        return {
            table: conn.execute(
                f"SELECT count(*) FROM {table} WHERE thread_id = %s", (thread_id,)
            ).fetchone()[0]
            for table in CHECKPOINT_TABLES
        }
