"""The long-term memory store's tables: LangGraph's own migrations (so the tables are exactly
PostgresStore's), then the column and index of full-text search.

Like the checkpoint tables, nothing is run when everything is current: an app role without
CREATE privileges starts once an owner has run the set-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from langgraph.store.postgres.aio import AsyncPostgresStore
from psycopg import sql
from psycopg.rows import DictRow

from lakebase_memory.errors import SchemaSetupError
from lakebase_memory.memory.store.text_search import SEARCH_TEXT_EXPRESSION

Connection = psycopg.AsyncConnection[DictRow]
SEARCH_TEXT_INDEX = "store_search_text_idx"
# A user's items newest first: a search by common words ranks only the most recent of its
# matches (text_search.RANKED_CANDIDATES), found along this index instead of all of them.
RECENT_ITEMS_INDEX = "store_prefix_updated_at_idx"
# The column's statistics keep its 10 x this most common words with their frequencies
# (PostgreSQL's default, 100, keeps 1,000). A word outside the list is estimated at half the
# rarest one's frequency: with too short a list, a search of two made-up names at a million
# items was planned as if they were common, scanning the user's whole namespace in the
# prefix index too (6 ms of a 10 ms hybrid search, 4 ms with this).
SEARCH_TEXT_STATISTICS = 1000


def _never_embeds(texts: Sequence[str]) -> list[list[float]]:
    raise AssertionError("the set-up embeds nothing")


async def ensure_store_tables(
    conn: Connection, schema: str, vector_dims: int | None = None
) -> list[str]:
    """Create or upgrade the store's tables in `schema`; with `vector_dims`, also pgvector's
    table of embeddings of that many dimensions. Returns a line per step done."""
    done: list[str] = []
    store_pending = (
        await _version(conn, schema, "store_migrations") < len(AsyncPostgresStore.MIGRATIONS) - 1
    )
    vector_pending = (
        vector_dims is not None
        and await _version(conn, schema, "vector_migrations")
        < len(AsyncPostgresStore.VECTOR_MIGRATIONS) - 1
    )
    if vector_dims is not None:
        await _check_vector_dims(conn, schema, vector_dims)
        if vector_pending:
            await _check_pgvector(conn)
    if vector_pending:
        # Before the search_path moves to `schema`: LangGraph's own CREATE EXTENSION would put
        # the type there, where a store in another schema could not find it.
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
    if store_pending or vector_pending:
        index: Any = None if vector_dims is None else {"dims": vector_dims, "embed": _never_embeds}
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        try:
            await AsyncPostgresStore(conn, index=index).setup()
        finally:
            await conn.execute("RESET search_path")
        done.append(f"store tables in {schema} (LangGraph's store migrations)")
        if vector_pending:
            done.append(f"store_vectors in {schema} ({vector_dims} dimensions, pgvector)")
    done += await _ensure_search_text(conn, schema)
    return done


async def pending_store_steps(conn: Connection, schema: str, vector_dims: int | None) -> list[str]:
    """What `ensure_store_tables` would do (read-only; for diagnosis)."""
    pending: list[str] = []
    if await _version(conn, schema, "store_migrations") < len(AsyncPostgresStore.MIGRATIONS) - 1:
        pending.append("store migrations")
    if (
        vector_dims is not None
        and await _version(conn, schema, "vector_migrations")
        < len(AsyncPostgresStore.VECTOR_MIGRATIONS) - 1
    ):
        pending.append("store vector migrations")
    if not await _has_search_text(conn, schema):
        pending.append("store full-text search column")
    return pending


async def _version(conn: Connection, schema: str, table: str) -> int:
    if await _regclass(conn, schema, table) is None:
        return -1
    cursor = await conn.execute(
        sql.SQL("SELECT max(v) AS v FROM {}").format(sql.Identifier(schema, table))
    )
    row = await cursor.fetchone()
    return -1 if not row or row["v"] is None else int(row["v"])


async def _regclass(conn: Connection, schema: str, name: str) -> int | None:
    cursor = await conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))::oid AS oid", (schema, name)
    )
    row = await cursor.fetchone()
    return None if not row else row["oid"]


def pgvector_missing(needed_by: str) -> str:
    """What to do when the server has no pgvector (start-up and doctor say the same)."""
    return (
        f"Search by meaning ({needed_by}) needs the pgvector extension, which this PostgreSQL "
        "server does not have. Install it (Debian: `apt install postgresql-<version>-pgvector`;"
        " the embedded PostgreSQL and Lakebase ship it), or set EMBEDDING_BACKEND=none to "
        "search memories by words (full-text search)."
    )


async def _check_pgvector(conn: Connection) -> None:
    cursor = await conn.execute(
        "SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'"
    )
    row = await cursor.fetchone()
    if row is None:
        raise SchemaSetupError(pgvector_missing("EMBEDDING_BACKEND"))
    if row["installed_version"] is None:
        cursor = await conn.execute(
            "SELECT rolsuper OR has_database_privilege(current_database(), 'CREATE') AS can "
            "FROM pg_roles WHERE rolname = current_user"
        )
        can = await cursor.fetchone()
        if not can or not can["can"]:
            raise SchemaSetupError(
                f"pgvector is available but not enabled in this database, and role "
                f"'{conn.info.user}' may not enable it. As the database owner run "
                "`CREATE EXTENSION vector;` (or `lakebase-memory setup`), then start again."
            )


async def vector_width(conn: Connection, schema: str) -> int | None:
    """The dimensions of `store_vectors.embedding`, or None when the table does not exist."""
    oid = await _regclass(conn, schema, "store_vectors")
    if oid is None:
        return None
    cursor = await conn.execute(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s AND attname = 'embedding' "
        "AND NOT attisdropped",
        (oid,),
    )
    row = await cursor.fetchone()
    return int(row["atttypmod"]) if row and row["atttypmod"] > 0 else None


async def _check_vector_dims(conn: Connection, schema: str, dims: int) -> None:
    width = await vector_width(conn, schema)
    if width is not None and width != dims:
        raise SchemaSetupError(
            f"{schema}.store_vectors holds embeddings of {width} dimensions, but "
            f"EMBEDDING_DIMS is {dims}. Set EMBEDDING_DIMS={width} (with the "
            "embedding model those vectors came from), or, to change models, drop the table "
            f"as its owner (`DROP TABLE {schema}.store_vectors; DELETE FROM "
            f"{schema}.vector_migrations;`) and start again: the store re-embeds what is put "
            "from then on."
        )


async def _has_search_text(conn: Connection, schema: str) -> bool:
    oid = await _regclass(conn, schema, "store")
    if oid is None:
        return False
    cursor = await conn.execute(
        "SELECT attstattarget FROM pg_attribute WHERE attrelid = %s AND attname = 'search_text' "
        "AND NOT attisdropped",
        (oid,),
    )
    row = await cursor.fetchone()
    return (
        row is not None
        and row["attstattarget"] == SEARCH_TEXT_STATISTICS
        and await _regclass(conn, schema, SEARCH_TEXT_INDEX) is not None
        and await _regclass(conn, schema, RECENT_ITEMS_INDEX) is not None
    )


async def _ensure_search_text(conn: Connection, schema: str) -> list[str]:
    if await _has_search_text(conn, schema):
        return []
    table = sql.Identifier(schema, "store")
    # A generated column: PostgreSQL keeps it right for every writer, LangGraph's own
    # PostgresStore included, and LangGraph's queries name their columns, so it is invisible
    # to them.
    await conn.execute(
        sql.SQL(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS search_text tsvector "
            "GENERATED ALWAYS AS ({}) STORED"
        ).format(table, sql.SQL(SEARCH_TEXT_EXPRESSION))  # type: ignore[arg-type]
    )
    await conn.execute(
        sql.SQL("ALTER TABLE {} ALTER COLUMN search_text SET STATISTICS {}").format(
            table, sql.Literal(SEARCH_TEXT_STATISTICS)
        )
    )
    await conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (search_text)").format(
            sql.Identifier(SEARCH_TEXT_INDEX), table
        )
    )
    await conn.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (prefix, updated_at DESC)").format(
            sql.Identifier(RECENT_ITEMS_INDEX), table
        )
    )
    return [f"full-text search column and index on {schema}.store"]
