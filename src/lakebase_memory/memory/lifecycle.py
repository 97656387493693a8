"""The thread lifecycle in the library: list threads with their size, delete a thread
completely, erase everything of one user (their long-term memories too), apply a retention
policy (issue 6).

A thread's rows live in nine tables (its background responses among them);
`thread_rows.delete_thread_rows` is the one place that knows them all, and the server's
user-scoped delete, `ThreadStore` and retention all go through it.

Listing reads `ai_chatbot.checkpoint_threads`, one row per thread that the linear saver keeps
current (owner, message count, bytes stored, last activity), through its two indexes, so a page
costs the same at a thousand or a million threads. Threads that only LangGraph's stock saver
ever wrote have no such row: `get` still finds them (zero stats), the server's chat list shows
them (it starts from `"Chat"`), and their first write through the linear saver (or
`lakebase-memory threads import-stock`) gives them one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lakebase_memory.database.borrow import borrow
from lakebase_memory.memory.retention import RetentionPolicy, RetentionReport, apply_retention
from lakebase_memory.memory.store_rows import delete_user_memories
from lakebase_memory.memory.thread_rows import (
    CHAT,
    RESPONSES,
    THREADS,
    DeletionCounts,
    delete_thread_rows,
)

__all__ = [
    "DeletionCounts",
    "ErasureCounts",
    "InvalidCursorError",
    "StatsPage",
    "ThreadStats",
    "ThreadStore",
    "delete_thread_rows",
    "list_query",
]

AsyncConn = AsyncConnection[Any] | AsyncConnectionPool[Any]

MAX_PAGE = 1000
T = TypeVar("T")


class InvalidCursorError(ValueError):
    """A pagination cursor that this code did not produce."""


@dataclass(frozen=True)
class ErasureCounts(DeletionCounts):
    """What erasing a user deleted: their threads' rows per table, and `memories`, the items
    of their long-term memory (each with its vectors)."""

    memories: int = 0

    def __add__(self, other: DeletionCounts) -> ErasureCounts:
        return ErasureCounts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name, 0) for f in fields(self)}
        )


@dataclass(frozen=True)
class ThreadStats:
    """One thread as the lifecycle sees it. Zero counts and `None` times: no saver row yet."""

    thread_id: str
    user_id: str | None
    title: str | None
    message_count: int
    size_bytes: int
    created_at: datetime | None
    last_activity: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.thread_id,
            "user_id": self.user_id,
            "title": self.title,
            "message_count": self.message_count,
            "size_bytes": self.size_bytes,
            "created_at": iso_utc(self.created_at),
            "last_activity": iso_utc(self.last_activity),
        }


@dataclass(frozen=True)
class StatsPage:
    threads: list[ThreadStats]
    next_cursor: str | None


class ThreadStore:
    """Threads of every user, for maintenance: list, get, delete, erase, retention.

    Args:
        conn: an `AsyncConnection` opened with `autocommit=True`, or a pool of such
            connections (the server passes its own pool).
        checkpoint_schema: the schema of LangGraph's checkpoint tables. Retention's history
            pruning runs the linear saver, which finds those tables through the connection's
            search_path: `from_conn_string` sets it, the server's pool has it.
    """

    def __init__(self, conn: AsyncConn, checkpoint_schema: str = "public") -> None:
        self.conn = conn
        self.checkpoint_schema = checkpoint_schema
        self._conn_lock = asyncio.Lock() if isinstance(conn, AsyncConnection) else None

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls, conninfo: str, checkpoint_schema: str = "public"
    ) -> AsyncIterator[ThreadStore]:
        """A store on one new connection (search_path set to the schema), closed at the end."""
        async with await AsyncConnection.connect(
            conninfo, autocommit=True, row_factory=dict_row
        ) as conn:
            if checkpoint_schema != "public":
                await conn.execute(
                    sql.SQL("SET search_path TO {}").format(sql.Identifier(checkpoint_schema))
                )
            yield cls(conn, checkpoint_schema)

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """One connection for a unit of work (a pooled one, or the shared one, serialised)."""
        return borrow(self.conn, "ThreadStore", self._conn_lock)

    async def list(
        self, user_id: str | None = None, *, limit: int = 20, cursor: str | None = None
    ) -> StatsPage:
        """Threads (of `user_id`, or of everyone), most recently active first, a page at a time.

        Pass the page's `next_cursor` back for the next one; `None` means it was the last.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        query, params = list_query(user_id, limit + 1, decode_cursor(cursor) if cursor else None)
        async with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            rows = await cur.fetchall()
        threads = [_stats(row) for row in rows[:limit]]
        more = len(rows) > limit
        return StatsPage(threads, encode_cursor(threads[-1]) if more and threads else None)

    async def get(self, thread_id: str) -> ThreadStats | None:
        """The thread's stats; `None` if no table has a row of it."""
        query = sql.SQL(
            """SELECT k.thread_id, coalesce(h.user_id, c."userId") AS user_id, c.title,
    coalesce(h.message_count, 0) AS message_count, coalesce(h.size_bytes, 0) AS size_bytes,
    coalesce(h.created_at, c."createdAt" AT TIME ZONE 'UTC') AS created_at,
    coalesce(h.updated_at, c."updatedAt" AT TIME ZONE 'UTC') AS last_activity
FROM (SELECT %(id)s::text AS thread_id) k
LEFT JOIN {threads} h ON h.thread_id = k.thread_id
LEFT JOIN {chat} c ON c."threadId" = k.thread_id
WHERE h.thread_id IS NOT NULL OR c.id IS NOT NULL
    OR EXISTS (SELECT 1 FROM {checkpoints} p WHERE p.thread_id = k.thread_id)"""
        ).format(
            threads=THREADS,
            chat=CHAT,
            checkpoints=sql.Identifier(self.checkpoint_schema, "checkpoints"),
        )
        async with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, {"id": thread_id})
            row = await cur.fetchone()
        return _stats(row) if row else None

    async def delete(self, thread_id: str) -> DeletionCounts:
        """Delete every row of the thread in one transaction; `threads == 0`: there was none."""
        return await self.delete_many([thread_id])

    async def delete_many(self, thread_ids: Sequence[str]) -> DeletionCounts:
        """Delete these threads whole, in one transaction."""
        async with self.connection() as conn, conn.transaction():
            return await delete_thread_rows(conn, thread_ids, self.checkpoint_schema)

    async def erase_user(self, user_id: str, *, batch_size: int = 500) -> ErasureCounts:
        """Delete everything of one user: each thread the saver or a chat says is theirs, and
        their long-term memories (`memories` in the counts).

        Batches of `batch_size` threads (then of memories), one transaction each, so that
        erasing a user with many threads never holds thousands of locks or one huge
        transaction. Threads the user starts meanwhile are taken too (the loop runs until none
        is left). A database without the store's table has no memories to erase.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        owned = sql.SQL(
            "(SELECT thread_id FROM {threads} WHERE user_id = %(user)s LIMIT %(n)s) UNION ALL "
            '(SELECT "threadId" FROM {chat} WHERE "userId" = %(user)s LIMIT %(n)s)'
        ).format(threads=THREADS, chat=CHAT)
        total = DeletionCounts()
        while True:
            async with (
                self.connection() as conn,
                conn.transaction(),
                conn.cursor(row_factory=dict_row) as cur,
            ):
                await cur.execute(owned, {"user": user_id, "n": batch_size})
                ids = builtins.list(dict.fromkeys(r["thread_id"] for r in await cur.fetchall()))
                if not ids:
                    break
                total += await delete_thread_rows(conn, ids[:batch_size], self.checkpoint_schema)
        # Background responses of threads that are no longer the user's (none, normally).
        async with self.connection() as conn:
            cursor = await conn.execute(
                sql.SQL("DELETE FROM {} WHERE user_id = %s").format(RESPONSES), (user_id,)
            )
            total += DeletionCounts(responses=max(cursor.rowcount, 0))
        memories = await self.forget_memories(user_id, batch_size=batch_size)
        return ErasureCounts(**total.to_json(), memories=memories)

    async def forget_memories(self, user_id: str, *, batch_size: int = 500) -> int:
        """Delete the user's long-term memories (and their vectors), in batches; how many."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        async with self.connection() as conn:
            return await delete_user_memories(
                conn, user_id, schema=self.checkpoint_schema, batch_size=batch_size
            )

    async def apply_retention(
        self, policy: RetentionPolicy, *, batch_size: int = 500, dry_run: bool = False
    ) -> RetentionReport:
        """Apply a `RetentionPolicy`; see `lakebase_memory.memory.retention.apply_retention`."""
        async with self.connection() as conn:
            return await apply_retention(
                conn,
                policy,
                checkpoint_schema=self.checkpoint_schema,
                batch_size=batch_size,
                dry_run=dry_run,
            )


def list_query(
    user_id: str | None, limit: int, after: tuple[datetime, str] | None
) -> tuple[sql.Composable, dict[str, Any]]:
    """The listing statement: an index scan of `checkpoint_threads`, newest activity first.

    One user: `checkpoint_threads_user_activity_idx (user_id, updated_at DESC, thread_id)` read
    forwards, so ties on the time go by ascending id. Everyone: `checkpoint_threads_activity_idx
    (updated_at, thread_id)` read backwards, ties by descending id. The cursor is the last
    row's (updated_at, thread_id), so a page never repeats or skips a thread.
    """
    params: dict[str, Any] = {"user": user_id, "limit": limit}
    where: list[sql.Composable] = []
    if user_id is not None:
        where.append(sql.SQL("h.user_id = %(user)s"))
        order = sql.SQL("h.updated_at DESC, h.thread_id")
        if after is not None:
            where.append(
                sql.SQL(
                    "h.updated_at <= %(at)s AND (h.updated_at < %(at)s OR h.thread_id > %(id)s)"
                )
            )
    else:
        order = sql.SQL("h.updated_at DESC, h.thread_id DESC")
        if after is not None:
            where.append(sql.SQL("(h.updated_at, h.thread_id) < (%(at)s, %(id)s)"))
    if after is not None:
        params["at"], params["id"] = after
    query = sql.SQL(
        """SELECT h.thread_id, h.user_id, c.title, h.message_count, h.size_bytes,
    h.created_at, h.updated_at AS last_activity
FROM {threads} h LEFT JOIN {chat} c ON c."threadId" = h.thread_id
{where} ORDER BY {order} LIMIT %(limit)s"""
    ).format(
        threads=THREADS,
        chat=CHAT,
        where=sql.SQL("WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        order=order,
    )
    return query, params


def pack_cursor(*values: str) -> str:
    """An opaque pagination cursor holding the last row's sort key."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def unpack_cursor(cursor: str, parse: Callable[[list[Any]], T]) -> T:
    """The sort key `pack_cursor` packed, read by `parse`; InvalidCursorError otherwise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return parse(json.loads(base64.urlsafe_b64decode(padded)))
    except (binascii.Error, ValueError, TypeError) as error:
        raise InvalidCursorError(
            f"Invalid cursor '{cursor}': pass the next_cursor value of the previous page."
        ) from error


def encode_cursor(last: ThreadStats) -> str:
    assert last.last_activity is not None
    return pack_cursor(last.last_activity.isoformat(), last.thread_id)


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    def parse(values: list[Any]) -> tuple[datetime, str]:
        at, thread_id = values
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not isinstance(thread_id, str):
            raise ValueError("not a thread cursor")
        return when, thread_id

    return unpack_cursor(cursor, parse)


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`; naive values are taken as UTC (the chat tables' convention)."""
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def _stats(row: dict[str, Any]) -> ThreadStats:
    return ThreadStats(
        thread_id=str(row["thread_id"]),
        user_id=row["user_id"],
        title=row["title"],
        message_count=int(row["message_count"]),
        size_bytes=int(row["size_bytes"]),
        created_at=row["created_at"],
        last_activity=row["last_activity"],
    )
