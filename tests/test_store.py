"""The long-term memory store on a real PostgreSQL: LangGraph's store behaviours (put, get,
delete, listing, namespaces, filters, TTL), search by words, hybrid search with embeddings,
compatibility with LangGraph's own PostgresStore, and erasing a user."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import psycopg
import pytest
from langgraph.store.postgres import AsyncPostgresStore
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from conftest import create_database
from lakebase_memory.agent.models.embeddings import HashEmbeddings
from lakebase_memory.errors import SchemaSetupError
from lakebase_memory.memory.store import (
    AsyncMemoryStore,
    MemoryStore,
    text_search,
    tsquery_text,
    user_namespace,
)
from lakebase_memory.schema import ensure_schema
from lakebase_memory.schema.store_schema import (
    ensure_store_tables,
    pending_store_steps,
    pgvector_missing,
)

ADA = user_namespace("ada@example.com")
FACTS = {
    "colour": {"fact": "my favourite colour is blue"},
    "pet": {"fact": "I have a cat called Turing"},
    "job": {"fact": "I work as a nurse at night"},
    "food": {"fact": "I love spicy noodles and green tea"},
}


async def open_store(database: str, dims: int | None = None, **kwargs: object) -> AsyncMemoryStore:
    await ensure_schema(database, vector_dims=dims)
    conn = await psycopg.AsyncConnection.connect(database, autocommit=True, row_factory=dict_row)
    index = None if dims is None else {"dims": dims, "embed": HashEmbeddings(dims)}
    return AsyncMemoryStore(conn, index=index, **kwargs)  # type: ignore[arg-type]


async def test_put_get_list_and_delete(database: str) -> None:
    store = await open_store(database)
    for key, value in FACTS.items():
        await store.aput(ADA, key, value)
    item = await store.aget(ADA, "pet")
    assert item is not None and item.value == FACTS["pet"] and item.namespace == ADA
    listed = await store.asearch(ADA, limit=10)
    assert [i.key for i in listed] == ["food", "job", "pet", "colour"]  # newest first
    assert all(i.score is None for i in listed)
    await store.aput(ADA, "pet", {"fact": "I have two cats"})  # replaces
    assert (await store.aget(ADA, "pet")).value == {"fact": "I have two cats"}  # type: ignore[union-attr]
    await store.adelete(ADA, "pet")
    assert await store.aget(ADA, "pet") is None
    assert await store.alist_namespaces(prefix=("user_memories",)) == [ADA]


async def test_search_by_words_ranks_what_matches(database: str) -> None:
    store = await open_store(database)
    for key, value in FACTS.items():
        await store.aput(ADA, key, value)
    found = await store.asearch(ADA, query="What is my favourite colour?")
    assert [i.key for i in found] == ["colour"]
    assert found[0].score is not None and 0 < found[0].score < 1
    # Stemmed (colours ~ colour, cats ~ cat), any word of the query may match, best first.
    found = await store.asearch(ADA, query="colours and cats")
    assert {i.key for i in found} == {"colour", "pet"}
    found = await store.asearch(ADA, query="green tea or noodles")
    assert found[0].key == "food"
    # The key's words count too.
    assert [i.key for i in await store.asearch(ADA, query="job")] == ["job"]
    # Nothing matches; only stop words; SQL and tsquery syntax are plain words.
    assert await store.asearch(ADA, query="submarine") == []
    assert await store.asearch(ADA, query="what is it") == []
    assert await store.asearch(ADA, query="'); DROP TABLE store; -- & | ! :*") == []
    assert await store.asearch(ADA, query="blue\x00") != []
    assert tsquery_text("a & b | c:* 'd'") == "a | b | c | d"


async def test_search_stays_in_its_namespace_and_filters(database: str) -> None:
    store = await open_store(database)
    await store.aput(user_namespace("user_1"), "k", {"fact": "blue sky", "kind": "a"})
    await store.aput(user_namespace("userX1"), "k", {"fact": "blue sea", "kind": "a"})
    await store.aput(user_namespace("user_1"), "k2", {"fact": "blue car", "kind": "b"})
    found = await store.asearch(user_namespace("user_1"), query="blue")
    assert sorted(i.value["fact"] for i in found) == ["blue car", "blue sky"]
    found = await store.asearch(user_namespace("user_1"), query="blue", filter={"kind": "b"})
    assert [i.key for i in found] == ["k2"]
    found = await store.asearch(user_namespace("user_1"), query="blue", limit=1, offset=1)
    assert len(found) == 1


async def test_many_matches_rank_the_newest_and_few_rank_exactly(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(text_search, "RANKED_CANDIDATES", 3)
    store = await open_store(database)
    # The best match (the word three times) is the oldest of five.
    await store.aput(ADA, "old", {"fact": "tea tea tea"})
    for n in range(4):
        await store.aput(ADA, f"new{n}", {"fact": f"tea number {n}"})
    await store.aput((*ADA, "notes"), "sub", {"fact": "tea in a sub-namespace"})
    # More matches than ranked: the 3 newest of each arm (the namespace, its descendants)
    # are ranked, so the best but oldest is not among them.
    found = await store.asearch(ADA, query="tea", limit=3)
    assert [i.key for i in found] == ["sub", "new3", "new2"]
    # limit + offset above the cap: that many are ranked, so nothing is cut short.
    assert len(await store.asearch(ADA, query="tea", limit=6)) == 6
    # At most the cap: the ranking is exact, the oldest item first.
    await store.adelete(ADA, "new0")
    await store.adelete(ADA, "new1")
    found = await store.asearch(ADA, query="tea", limit=10)
    assert found[0].key == "old" and len(found) == 4
    # Hybrid search ranks the same candidates by words (these items have no vectors).
    hybrid = await open_store(database, dims=8)
    found = await hybrid.asearch(ADA, query="tea tea", limit=10)
    assert [i.key for i in found][:1] == ["old"] and len(found) == 4


async def test_expired_items_are_not_read_and_the_sweep_deletes_them(database: str) -> None:
    store = await open_store(database, ttl={"omit_expired": True, "refresh_on_read": True})
    await store.aput(ADA, "short", {"fact": "blue for a minute"}, ttl=1)
    await store.aput(ADA, "long", {"fact": "blue forever"})
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        await conn.execute("UPDATE store SET expires_at = now() - interval '1 second' "
                           "WHERE key = 'short'")  # fmt: skip
    assert await store.aget(ADA, "short") is None
    assert [i.key for i in await store.asearch(ADA, query="blue")] == ["long"]
    assert await store.sweep_ttl() == 1  # the async store's sweep is a coroutine
    async with await psycopg.AsyncConnection.connect(database) as conn:
        rows = await (await conn.execute("SELECT key FROM store")).fetchall()
    assert rows == [("long",)]


async def test_reading_refreshes_a_ttl(database: str) -> None:
    store = await open_store(database, ttl={"omit_expired": True, "refresh_on_read": True})
    await store.aput(ADA, "k", {"fact": "blue"}, ttl=60)
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        await conn.execute("UPDATE store SET expires_at = now() + interval '1 minute'")
        await store.asearch(ADA, query="blue")
        row = await (await conn.execute("SELECT expires_at - now() AS left FROM store")).fetchone()
    assert row is not None and row[0] > timedelta(minutes=59)


async def test_hybrid_search_fuses_meaning_and_words(database: str) -> None:
    store = await open_store(database, dims=64)
    for key, value in FACTS.items():
        await store.aput(ADA, key, value)
    async with await psycopg.AsyncConnection.connect(database) as conn:
        vectors = await (await conn.execute("SELECT count(*) FROM store_vectors")).fetchone()
    assert vectors == (4,)
    found = await store.asearch(ADA, query="favourite colour", limit=4)
    assert found[0].key == "colour"
    # Reciprocal rank fusion: first in both lists is 2/(60+1).
    assert found[0].score == pytest.approx(2 / 61)
    assert len(found) == 4  # the vector list ranks every item; the word list only matches
    assert found[1].score == pytest.approx(1 / 62)


async def test_langgraphs_own_store_and_this_one_read_each_other(database: str) -> None:
    ours = await open_store(database)
    async with AsyncPostgresStore.from_conn_string(database) as stock:
        await stock.setup()  # nothing to do: the tables are LangGraph's own
        await stock.aput(ADA, "stock", {"fact": "written by PostgresStore about cycling"})
        await ours.aput(ADA, "ours", {"fact": "written here about swimming"})
        assert (await stock.aget(ADA, "ours")).value["fact"].endswith("swimming")  # type: ignore[union-attr]
        assert {i.key for i in await stock.asearch(ADA)} == {"stock", "ours"}
    # The generated column indexes what any writer put.
    assert [i.key for i in await ours.asearch(ADA, query="cycling")] == ["stock"]


async def test_forgetting_a_user_leaves_the_others(database: str) -> None:
    store = await open_store(database, dims=16)
    await store.aput(user_namespace("a_b"), "k", {"fact": "one"})
    await store.aput((*user_namespace("a_b"), "notes"), "k", {"fact": "two"})
    await store.aput(user_namespace("aXb"), "k", {"fact": "three"})
    await store.aput(user_namespace("a_bc"), "k", {"fact": "four"})
    assert await store.aforget_user("a_b") == 2
    async with await psycopg.AsyncConnection.connect(database) as conn:
        prefixes = await (await conn.execute("SELECT prefix FROM store ORDER BY 1")).fetchall()
        vectors = await (
            await conn.execute("SELECT prefix FROM store_vectors ORDER BY 1")
        ).fetchall()
    assert prefixes == vectors == [("user_memories.aXb",), ("user_memories.a_bc",)]


def test_the_sync_store_does_the_same(database: str) -> None:
    asyncio.run(ensure_schema(database))
    with psycopg.connect(database, autocommit=True, row_factory=dict_row) as conn:
        store = MemoryStore(conn)  # type: ignore[arg-type]
        store.put(ADA, "colour", FACTS["colour"])
        store.put(ADA, "pet", FACTS["pet"])
        assert [i.key for i in store.search(ADA, query="favourite colour")] == ["colour"]
        assert store.forget_user("ada@example.com") == 2
        assert store.search(ADA) == []


async def test_schema_setup_is_idempotent_and_checks_dimensions(database: str) -> None:
    first = await ensure_schema(database, vector_dims=32)
    assert any("store tables" in line for line in first)
    assert any("store_vectors" in line and "32 dimensions" in line for line in first)
    assert any("full-text search" in line for line in first)
    assert await ensure_schema(database, vector_dims=32) == []
    async with await psycopg.AsyncConnection.connect(database, row_factory=dict_row) as conn:
        assert await pending_store_steps(conn, "public", 32) == []
    with pytest.raises(SchemaSetupError, match=r"of 32 dimensions.*EMBEDDING_DIMS"):
        await ensure_schema(database, vector_dims=64)


def test_every_user_has_a_namespace_of_their_own() -> None:
    # The reference's namespace for ids without "-" or "%": its stores read as they are.
    assert user_namespace("ada.lovelace@example.com") == (
        "user_memories",
        "ada-lovelace@example-com",
    )
    ids = ["john.smith@corp.com", "john-smith@corp.com", "john%2Dsmith@corp.com", "a.-b", "a-.b"]
    assert len({user_namespace(i) for i in ids}) == len(ids)


async def test_a_role_that_may_not_enable_pgvector_is_told_who_can(pg_admin: str) -> None:
    database = create_database(pg_admin)
    role = f"r_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(pg_admin, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    as_role = make_conninfo(database, user=role)
    async with await psycopg.AsyncConnection.connect(as_role, row_factory=dict_row) as conn:
        with pytest.raises(
            SchemaSetupError, match=f"role '{role}' may not enable it.*CREATE EXTENSION vector"
        ):
            await ensure_store_tables(conn, "public", 8)


def test_pgvector_missing_says_how_to_install_it_or_go_without() -> None:
    text = pgvector_missing("EMBEDDING_BACKEND=hash")
    assert "EMBEDDING_BACKEND=hash" in text and "postgresql-<version>-pgvector" in text
    assert "EMBEDDING_BACKEND=none" in text
