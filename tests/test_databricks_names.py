"""databricks-langchain's Lakebase names (`lakebase_memory.compat`), against the local Lakebase
with the real databricks-sdk: a LangGraph graph with the drop-in checkpointer and store keeps a
thread and stores and searches memories, sync and async; the embeddings come from the local
workspace's embedding endpoint (`local_lakebase/serving.py`, deterministic vectors)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.store.base import BaseStore, SearchItem
from psycopg import sql

from lakebase_fixtures import workspace_client
from lakebase_memory import (
    AsyncCheckpointSaver,
    AsyncDatabricksStore,
    CheckpointSaver,
    DatabricksStore,
)
from lakebase_memory.agent.models.embeddings import HashEmbeddings
from lakebase_memory.compat.embeddings import ServingEndpointEmbeddings
from lakebase_memory.compat.lakebase_target import NO_TARGET
from lakebase_memory.database.lakebase import LakebaseError
from lakebase_memory.local_lakebase import LocalLakebase
from lakebase_memory.local_lakebase.serving import EMBEDDING_ENDPOINTS
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver, LinearPostgresSaver
from lakebase_memory.memory.store import AsyncMemoryStore, MemoryStore

ENDPOINT = "databricks-gte-large-en"
DIMS = EMBEDDING_ENDPOINTS[ENDPOINT]
FOREIGN = ("DATABRICKS_", "LAKEBASE_", "PG", "DATABASE_URL")
THREAD_ROW = sql.SQL(
    "SELECT user_id, message_count FROM ai_chatbot.checkpoint_threads WHERE thread_id = %s"
)


@pytest.fixture
def ll(monkeypatch, local_lakebase: LocalLakebase, tmp_path: Path) -> LocalLakebase:
    """A process environment with nothing of this machine's Databricks or PostgreSQL
    configuration, and the local instance's port (its `.env.local` line)."""
    monkeypatch.chdir(tmp_path)  # no dotenv files of the checkout
    for name in list(os.environ):
        if name.startswith(FOREIGN):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PGPORT", str(local_lakebase.pg_port))
    # Lakebase lets the instance owner enable pgvector; the stand-in's PostgreSQL asks for a
    # superuser, so it is enabled here as the stand-in's own superuser.
    with psycopg.connect(local_lakebase.admin_conninfo(), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
    return local_lakebase


def owner_rows(ll: LocalLakebase, query: sql.Composable, params: tuple[object, ...]) -> list:
    """Run SQL as the instance owner, through the TLS port with a database credential."""
    token = ll.issue_database_credential(ll.owner)
    with psycopg.connect(ll.conninfo(ll.owner, token), autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


# --- the graph: remembers each user message, answers with what it found and the count --------


def user_namespace(config: RunnableConfig) -> tuple[str, str]:
    return ("user_memories", config["configurable"]["user_id"])


def answer(messages: list[AnyMessage], hits: list[SearchItem]) -> dict[str, list[AIMessage]]:
    found = hits[0].value["text"] if hits else "nothing"
    users = sum(1 for m in messages if m.type == "human")
    return {"messages": [AIMessage(f"{users} messages so far; I recall: {found}")]}


def sync_node(state: MessagesState, config: RunnableConfig, *, store: BaseStore) -> dict:
    latest = state["messages"][-1]
    hits = store.search(user_namespace(config), query=str(latest.content), limit=1)
    store.put(user_namespace(config), str(latest.id), {"text": latest.content})
    return answer(state["messages"], hits)


async def async_node(state: MessagesState, config: RunnableConfig, *, store: BaseStore) -> dict:
    latest = state["messages"][-1]
    hits = await store.asearch(user_namespace(config), query=str(latest.content), limit=1)
    await store.aput(user_namespace(config), str(latest.id), {"text": latest.content})
    return answer(state["messages"], hits)


def graph_builder(node: object) -> StateGraph:
    builder = StateGraph(MessagesState)
    builder.add_node("remember", node)  # type: ignore[call-overload]
    builder.add_edge(START, "remember")
    return builder


def turn_config() -> RunnableConfig:
    return {"configurable": {"thread_id": f"dropin-{uuid.uuid4()}", "user_id": uuid.uuid4().hex}}


FIRST = "My favourite colour is teal."
SECOND = "Which colour do I like?"


def check_conversation(ll: LocalLakebase, config: RunnableConfig, result: dict) -> None:
    messages = result["messages"]
    assert [m.type for m in messages] == ["human", "ai", "human", "ai"]  # the thread was kept
    assert messages[1].content == "1 messages so far; I recall: nothing"
    assert messages[3].content == f"2 messages so far; I recall: {FIRST}"
    thread = config["configurable"]["thread_id"]
    # Saved by the linear saver: its bookkeeping row, with the owner the config names.
    rows = owner_rows(ll, THREAD_ROW, (thread,))
    assert rows == [(config["configurable"]["user_id"], 4)]


def vector_rows(ll: LocalLakebase, config: RunnableConfig) -> int:
    prefix = ".".join(user_namespace(config))
    query = sql.SQL("SELECT count(*) FROM public.store_vectors WHERE prefix = %s")
    return int(owner_rows(ll, query, (prefix,))[0][0])


# --- the drop-in pairs -------------------------------------------------------------------


async def test_the_async_pair_keeps_a_thread_and_searches_memories(ll: LocalLakebase) -> None:
    w = workspace_client(ll)
    async with (
        AsyncCheckpointSaver(instance_name=ll.instance_name, workspace_client=w) as checkpointer,
        AsyncDatabricksStore(
            instance_name=ll.instance_name,
            workspace_client=w,
            embedding_endpoint=ENDPOINT,
            embedding_dims=DIMS,
        ) as store,
    ):
        await checkpointer.setup()
        await store.setup()
        await store.setup()  # idempotent
        assert isinstance(checkpointer, AsyncLinearPostgresSaver)
        assert isinstance(store, AsyncMemoryStore)
        builder = graph_builder(async_node)
        graph = builder.compile(checkpointer=checkpointer, store=store)
        config = turn_config()
        await graph.ainvoke({"messages": [("user", FIRST)]}, config)
        result = await graph.ainvoke({"messages": [("user", SECOND)]}, config)
        check_conversation(ll, config, result)

        # Search by meaning and words: the endpoint's vectors are stored, one per item.
        assert vector_rows(ll, config) == 2
        hits = await store.asearch(user_namespace(config), query="teal", limit=2)
        assert hits[0].value["text"] == FIRST
        assert isinstance(store.embeddings, ServingEndpointEmbeddings)
        vector = await store.embeddings.aembed_query("teal")
        assert vector == HashEmbeddings(DIMS).embed_query("teal")  # the stand-in's vectors
    # The thread, read back through a new saver (a new pool, new logins).
    async with AsyncCheckpointSaver(instance_name=ll.instance_name, workspace_client=w) as again:
        state = await builder.compile(checkpointer=again).aget_state(config)
        assert len(state.values["messages"]) == 4


def test_the_sync_pair_keeps_a_thread_and_searches_memories(ll: LocalLakebase) -> None:
    w = workspace_client(ll)
    with (
        CheckpointSaver(instance_name=ll.instance_name, workspace_client=w) as checkpointer,
        DatabricksStore(
            instance_name=ll.instance_name,
            workspace_client=w,
            embedding_endpoint=ENDPOINT,
            embedding_dims=DIMS,
        ) as store,
    ):
        checkpointer.setup()
        store.setup()
        assert isinstance(checkpointer, LinearPostgresSaver)
        assert isinstance(store, MemoryStore)
        graph = graph_builder(sync_node).compile(checkpointer=checkpointer, store=store)
        config = turn_config()
        graph.invoke({"messages": [("user", FIRST)]}, config)
        result = graph.invoke({"messages": [("user", SECOND)]}, config)
        check_conversation(ll, config, result)
        assert vector_rows(ll, config) == 2
        hits = store.search(user_namespace(config), query="teal")
        assert hits[0].value["text"] == FIRST
        assert hits[0].score is not None
    assert checkpointer.conn.closed and store.conn.closed  # the context closed both pools


async def test_autoscaling_targets_a_schema_and_pool_options(ll: LocalLakebase) -> None:
    """`project=`/`branch=` and `autoscaling_endpoint=`, `schema=`, pool keywords, and a store
    without embeddings (search by words)."""
    w = workspace_client(ll)
    schema = f"dropin_{uuid.uuid4().hex[:8]}"
    try:
        async with (
            AsyncCheckpointSaver(
                project=ll.project, branch=ll.branch, workspace_client=w, schema=schema,
                max_size=2, token_cache_duration_seconds=900,
            ) as checkpointer,
            AsyncDatabricksStore(
                autoscaling_endpoint=ll.endpoint_name, workspace_client=w, schema=schema
            ) as store,
        ):  # fmt: skip
            await checkpointer.setup()
            await store.setup()
            assert checkpointer.conn.max_size == 2
            graph = graph_builder(async_node).compile(checkpointer=checkpointer, store=store)
            config = turn_config()
            await graph.ainvoke({"messages": [("user", FIRST)]}, config)
            result = await graph.ainvoke({"messages": [("user", SECOND)]}, config)
            check_conversation(ll, config, result)
            assert store.embeddings is None
        tables = owner_rows(
            ll,
            sql.SQL(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_name IN ('checkpoints', 'store') ORDER BY 1"
            ),
            (schema,),
        )
        assert tables == [("checkpoints",), ("store",)]
        prefix = ".".join(user_namespace(config))
        query = sql.SQL("SELECT count(*) FROM {}.store WHERE prefix = %s").format(
            sql.Identifier(schema)
        )
        assert owner_rows(ll, query, (prefix,)) == [(2,)]
    finally:
        drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        owner_rows(ll, drop, ())


async def test_the_sync_classes_inside_a_running_event_loop(ll: LocalLakebase) -> None:
    """As in a notebook: the sync set-up runs its work on a loop of its own, in a thread."""
    w = workspace_client(ll)
    with CheckpointSaver(instance_name=ll.instance_name, workspace_client=w) as checkpointer:
        checkpointer.setup()
        assert checkpointer.get_tuple(turn_config()) is None


# --- failures ----------------------------------------------------------------------------


def check_wrong_instance(error: LakebaseError, ll: LocalLakebase) -> None:
    text = str(error)
    assert text.startswith(
        "Failed to connect to Lakebase instance 'no-such-instance'. Please verify:\n"
        "1. The instance name is correct"
    )
    assert "Cause: no Lakebase instance named 'no-such-instance'" in text
    assert f"Instances in this workspace: {ll.instance_name}." in text


async def test_a_wrong_instance_name_gives_the_projects_error(ll: LocalLakebase) -> None:
    w = workspace_client(ll)
    with pytest.raises(LakebaseError) as sync_error:
        CheckpointSaver(instance_name="no-such-instance", workspace_client=w)
    check_wrong_instance(sync_error.value, ll)
    with pytest.raises(LakebaseError) as async_error:
        async with AsyncDatabricksStore(instance_name="no-such-instance", workspace_client=w):
            pass
    check_wrong_instance(async_error.value, ll)


async def test_an_unknown_embedding_endpoint_is_named(ll: LocalLakebase) -> None:
    async with AsyncDatabricksStore(
        instance_name=ll.instance_name,
        workspace_client=workspace_client(ll),
        embedding_endpoint="no-such-endpoint",
        embedding_dims=DIMS,
    ) as store:
        with pytest.raises(LookupError, match="No model serving endpoint 'no-such-endpoint'"):
            await store.aput(("user_memories", uuid.uuid4().hex), "k", {"text": "hello"})


async def test_argument_checks_come_before_any_connection() -> None:
    with pytest.raises(ValueError) as none_given:
        CheckpointSaver()
    assert str(none_given.value) == NO_TARGET
    with pytest.raises(ValueError, match="Choose one mode"):
        AsyncCheckpointSaver(instance_name="i", project="p", branch="b")
    with pytest.raises(ValueError, match="embedding_dims is required when embedding_endpoint"):
        DatabricksStore(instance_name="i", embedding_endpoint=ENDPOINT)
    with pytest.warns(UserWarning, match="Using the provided 'embeddings' instance"):
        store = AsyncDatabricksStore(
            instance_name="i", embedding_endpoint=ENDPOINT, embeddings=HashEmbeddings(8),
            embedding_dims=8,
        )  # fmt: skip
    assert isinstance(store.embeddings, HashEmbeddings)
    # Not opened yet: a clear error, not a pool timeout.
    with pytest.raises(RuntimeError, match="AsyncDatabricksStore is not open"):
        await store.aget(("x",), "k")
