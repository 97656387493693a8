"""The long-term memory store's rows, for the lifecycle: a user's memories (erasure) and
expired ones (retention), deleted in batches, one transaction each. The layer under
`lifecycle.ThreadStore.erase_user` and `retention.apply_retention`, as `thread_rows` is for
threads.

The store is LangGraph's `store` table in the checkpoint schema (`memory.store`). A user's
memories are the rows of their namespace `("user_memories", <user>)` and below it; an item's
`store_vectors` rows go with it (ON DELETE CASCADE). A database set up before the store (or a
library user's without one) has no such table: then there is nothing to delete.
"""

from __future__ import annotations

from typing import Any, LiteralString

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row

from lakebase_memory.memory.store.namespaces import namespace_patterns

# A user's rows, locked in key order (two erasures of one user queue instead of deadlocking).
_FORGET_BATCH: LiteralString = r"""WITH doomed AS (
    SELECT prefix, key FROM {store}
    WHERE prefix = %(prefix)s OR prefix LIKE %(below)s ESCAPE '\'
    ORDER BY prefix, key LIMIT %(n)s FOR UPDATE
)
DELETE FROM {store} s USING doomed d WHERE s.prefix = d.prefix AND s.key = d.key"""
# Expired rows, oldest first (LangGraph's `idx_store_expires_at`); rows being written are
# skipped and left for the next pass.
_EXPIRE_BATCH: LiteralString = """WITH doomed AS (
    SELECT prefix, key FROM {store} WHERE expires_at < now()
    ORDER BY expires_at LIMIT %(n)s FOR UPDATE SKIP LOCKED
)
DELETE FROM {store} s USING doomed d WHERE s.prefix = d.prefix AND s.key = d.key"""


async def store_table(conn: AsyncConnection[Any], schema: str) -> sql.Identifier | None:
    """The store's table in `schema`, or None where it does not exist."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute("SELECT to_regclass(format('%%I.store', %s::text))", (schema,))
        row = await cur.fetchone()
    return None if row is None or row[0] is None else sql.Identifier(schema, "store")


def forget_params(user_id: str, batch_size: int) -> dict[str, Any]:
    return {**namespace_patterns(user_id), "n": batch_size}


def forget_batch_query(store: sql.Identifier) -> sql.Composable:
    return sql.SQL(_FORGET_BATCH).format(store=store)


def expire_batch_query(store: sql.Identifier) -> sql.Composable:
    return sql.SQL(_EXPIRE_BATCH).format(store=store)


async def _in_batches(
    conn: AsyncConnection[Any], statement: sql.Composable, params: dict[str, Any]
) -> tuple[int, int]:
    """Run a batch statement until a batch deletes fewer than `n` rows; (rows, batches)."""
    deleted = batches = 0
    while True:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(statement, params)
            count = max(cur.rowcount, 0)
        deleted, batches = deleted + count, batches + bool(count)
        if count < params["n"]:
            return deleted, batches


async def delete_user_memories(
    conn: AsyncConnection[Any], user_id: str, *, schema: str = "public", batch_size: int = 500
) -> int:
    """Delete every memory of `user_id` (their vectors go with them); how many."""
    table = await store_table(conn, schema)
    if table is None:
        return 0
    deleted, _ = await _in_batches(
        conn, forget_batch_query(table), forget_params(user_id, batch_size)
    )
    return deleted


async def delete_expired_memories(
    conn: AsyncConnection[Any], *, schema: str = "public", batch_size: int = 500
) -> tuple[int, int]:
    """Delete the store's items whose TTL has passed; (items, batches)."""
    table = await store_table(conn, schema)
    if table is None:
        return 0, 0
    return await _in_batches(conn, expire_batch_query(table), {"n": batch_size})


async def count_expired_memories(conn: AsyncConnection[Any], *, schema: str = "public") -> int:
    """How many of the store's items have expired (a dry run's count)."""
    table = await store_table(conn, schema)
    if table is None:
        return 0
    query = sql.SQL("SELECT count(*) FROM {} WHERE expires_at < now()").format(table)
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query)
        row = await cur.fetchone()
    return int(row[0]) if row else 0
