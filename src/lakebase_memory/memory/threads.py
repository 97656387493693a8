"""The thread catalogue: who owns which thread, its title and activity, in `ai_chatbot."Chat"`.

A chat is an agent thread: `"threadId"` holds the thread id (any string) and `id` is that id
when it is a UUID, else a UUID derived from it, so the chat UI and the thread API agree.
Reads join the linear saver's `ai_chatbot.checkpoint_threads` for each thread's size and last
activity; a thread it has no row for (written by the stock saver) shows zeros.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from lakebase_memory.database.pool import Pool
from lakebase_memory.database.reconnect import repeatable
from lakebase_memory.memory.lifecycle import InvalidCursorError, iso_utc, pack_cursor, unpack_cursor
from lakebase_memory.memory.thread_rows import CHAT, THREADS, delete_thread_rows

__all__ = [
    "InvalidCursorError",
    "ThreadCatalogue",
    "ThreadConflictError",
    "ThreadNotFoundError",
    "ThreadPage",
    "ThreadSummary",
    "chat_id_for",
    "title_from",
]

TITLE_MAX_CHARS = 80
UNTITLED = "New chat"
_DERIVED_ID_NAMESPACE = uuid.UUID("6f1c1a52-7d2e-4a63-9a5e-2b9a1c4f7e10")


class ThreadNotFoundError(LookupError):
    """No thread with this id belongs to the caller (it may not exist or be someone else's)."""

    def __init__(self, thread_id: str) -> None:
        super().__init__(f"No thread '{thread_id}' for this user.")
        self.thread_id = thread_id


class ThreadConflictError(ValueError):
    """Two different thread ids would share one chat id."""


@dataclass(frozen=True)
class ThreadSummary:
    thread_id: str
    chat_id: uuid.UUID
    title: str
    user_id: str
    created_at: datetime
    updated_at: datetime
    # From the saver's thread row; zero when it has none (a thread of the stock saver).
    message_count: int = 0
    size_bytes: int = 0
    saved_at: datetime | None = None  # the saver's last write (aware)

    @property
    def last_activity(self) -> datetime:
        """The later of the chat's activity (a turn started) and the saver's last write."""
        chat = self.updated_at.replace(tzinfo=UTC)
        return max(chat, self.saved_at.astimezone(UTC)) if self.saved_at else chat

    def to_json(self) -> dict[str, str | int]:
        return {
            "id": self.thread_id,
            "chat_id": str(self.chat_id),
            "title": self.title,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "message_count": self.message_count,
            "size_bytes": self.size_bytes,
            "last_activity": _iso(self.last_activity),
        }


@dataclass(frozen=True)
class ThreadPage:
    threads: list[ThreadSummary]
    next_cursor: str | None


def chat_id_for(thread_id: str) -> uuid.UUID:
    return uuid_for(thread_id, _DERIVED_ID_NAMESPACE)


# A full "Message" sync (after a restart, or a fork's every turn) maps every message of its
# thread: 3.5 us per id uncached, 2 ms at 300 turns. UUIDs are immutable: sharing is safe.
@functools.lru_cache(maxsize=65536)
def uuid_for(raw: str, namespace: uuid.UUID) -> uuid.UUID:
    """`raw` itself when it is a UUID in canonical spelling, else a UUID derived from it.

    "{...}" or upper-case forms of a UUID are other strings and get derived ids of their own,
    so two different ids never share a row.
    """
    try:
        parsed = uuid.UUID(raw)
        if str(parsed) == raw:
            return parsed
    except ValueError:
        pass
    return uuid.uuid5(namespace, raw)


def title_from(text: str) -> str:
    words = " ".join(text.split())
    if not words:
        return UNTITLED
    return words if len(words) <= TITLE_MAX_CHARS else words[: TITLE_MAX_CHARS - 1] + "…"


_COLUMNS = sql.SQL('"threadId", id, title, "userId", "createdAt", "updatedAt"')
_CHAT = CHAT
# A chat with its thread's stats; `c` is the chat (a table or a CTE), `h` the saver's row.
_WITH_STATS = sql.SQL(
    'c."threadId", c.id, c.title, c."userId", c."createdAt", c."updatedAt", '
    "coalesce(h.message_count, 0) AS message_count, coalesce(h.size_bytes, 0) AS size_bytes, "
    "h.updated_at AS saved_at"
)
_STATS_JOIN = sql.SQL('LEFT JOIN {} h ON h.thread_id = c."threadId"').format(THREADS)


async def _chat_holds(conn: psycopg.AsyncConnection, chat_id: uuid.UUID, thread_id: str) -> bool:
    """Whether the chat row with this id is the thread's own."""
    query = sql.SQL('SELECT 1 AS held FROM {} WHERE id = %s AND "threadId" = %s').format(_CHAT)
    return await (await conn.execute(query, (chat_id, thread_id))).fetchone() is not None


class ThreadCatalogue:
    """Per-user thread list on the app's pool. Every method is scoped to one user."""

    def __init__(self, pool: Pool, checkpoint_schema: str = "public") -> None:
        self.pool = pool
        self._checkpoint_schema = checkpoint_schema

    @repeatable
    async def claim(self, thread_id: str, user_id: str, first_text: str) -> ThreadSummary:
        """Create the thread for `user_id`, or mark activity on it; someone else's is not found."""
        now = utc_now()
        query = sql.SQL(
            'INSERT INTO {chat} (id, "threadId", title, "userId", "createdAt", "updatedAt") '
            "VALUES (%s, %s, %s, %s, %s, %s) "
            'ON CONFLICT ("threadId") DO UPDATE SET "updatedAt" = excluded."updatedAt" '
            'WHERE {chat}."userId" = excluded."userId" '
            "RETURNING {cols}"
        ).format(chat=_CHAT, cols=_COLUMNS)
        values = (chat_id_for(thread_id), thread_id, title_from(first_text), user_id, now, now)
        async with self.pool.connection() as conn:
            for attempt in (1, 2):
                try:
                    cursor = await conn.execute(query, values)
                    break
                except psycopg.errors.UniqueViolation as error:
                    # ON CONFLICT arbitrates on "threadId" only. Two first turns of one new
                    # thread at once (two processes, say) can collide on the primary key
                    # first, which is the same row: once the other commits, the upsert
                    # takes its conflict path. Only a different thread on the id conflicts.
                    if attempt == 1 and await _chat_holds(conn, values[0], thread_id):
                        continue
                    raise ThreadConflictError(
                        f"Thread id '{thread_id}' maps to the chat id of another thread; "
                        "choose another id."
                    ) from error
            row = await cursor.fetchone()
        if row is None:
            raise ThreadNotFoundError(thread_id)
        return _summary(row)

    @repeatable
    async def get(self, thread_id: str, user_id: str) -> ThreadSummary:
        query = sql.SQL(
            'SELECT {cols} FROM {chat} c {stats} WHERE c."threadId" = %s AND c."userId" = %s'
        ).format(chat=_CHAT, cols=_WITH_STATS, stats=_STATS_JOIN)
        async with self.pool.connection() as conn:
            cursor = await conn.execute(query, (thread_id, user_id))
            row = await cursor.fetchone()
        if row is None:
            raise ThreadNotFoundError(thread_id)
        return _summary(row)

    @repeatable
    async def rename(self, thread_id: str, user_id: str, title: str) -> ThreadSummary:
        query = sql.SQL(
            'WITH c AS (UPDATE {chat} SET title = %s WHERE "threadId" = %s AND "userId" = %s '
            "RETURNING {cols}) SELECT {stats_cols} FROM c {stats}"
        ).format(chat=_CHAT, cols=_COLUMNS, stats_cols=_WITH_STATS, stats=_STATS_JOIN)
        async with self.pool.connection() as conn:
            row = await (await conn.execute(query, (title, thread_id, user_id))).fetchone()
        if row is None:
            raise ThreadNotFoundError(thread_id)
        return _summary(row)

    @repeatable
    async def list(self, user_id: str, *, limit: int = 20, cursor: str | None = None) -> ThreadPage:
        """The user's threads, most recently active first, `limit` at a time."""
        after = _decode_cursor(cursor) if cursor else None
        condition = sql.SQL('c."userId" = %s')
        params: list[object] = [user_id]
        if after is not None:
            condition = sql.SQL('c."userId" = %s AND (c."updatedAt", c.id) < (%s, %s)')
            params += [after[0], after[1]]
        # The chat index orders the page; the stats are one primary-key probe per row.
        query = sql.SQL(
            "SELECT {cols} FROM {chat} c {stats} WHERE {cond} "
            'ORDER BY c."updatedAt" DESC, c.id DESC LIMIT %s'
        ).format(chat=_CHAT, cols=_WITH_STATS, stats=_STATS_JOIN, cond=condition)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(query, [*params, limit + 1])).fetchall()
        threads = [_summary(row) for row in rows[:limit]]
        next_cursor = _encode_cursor(threads[-1]) if len(rows) > limit else None
        return ThreadPage(threads, next_cursor)

    async def delete(self, thread_id: str, user_id: str) -> None:
        """Delete the thread whole (chat, messages, votes, checkpoints, message log) at once.

        Not repeated after a dropped connection: a delete that committed unseen would answer
        404 the second time.
        """
        owned = sql.SQL('SELECT 1 FROM {chat} WHERE "threadId" = %s AND "userId" = %s').format(
            chat=_CHAT
        )
        async with self.pool.connection() as conn, conn.transaction():
            if await (await conn.execute(owned, (thread_id, user_id))).fetchone() is None:
                raise ThreadNotFoundError(thread_id)
            await delete_thread_rows(conn, [thread_id], self._checkpoint_schema)


def _summary(row: dict[str, object]) -> ThreadSummary:
    return ThreadSummary(
        thread_id=str(row["threadId"]),
        chat_id=row["id"],  # type: ignore[arg-type]
        title=str(row["title"]),
        user_id=str(row["userId"]),
        created_at=row["createdAt"],  # type: ignore[arg-type]
        updated_at=row["updatedAt"],  # type: ignore[arg-type]
        message_count=int(row.get("message_count") or 0),  # type: ignore[call-overload]
        size_bytes=int(row.get("size_bytes") or 0),  # type: ignore[call-overload]
        saved_at=row.get("saved_at"),  # type: ignore[arg-type]
    )


def utc_now() -> datetime:
    # The reference's columns are `timestamp` without time zone, holding UTC.
    return datetime.now(UTC).replace(tzinfo=None)


def _iso(value: datetime) -> str:
    return iso_utc(value) or ""


def _encode_cursor(last: ThreadSummary) -> str:
    return pack_cursor(last.updated_at.isoformat(), str(last.chat_id))


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    def parse(values: list[Any]) -> tuple[datetime, uuid.UUID]:
        updated_at, chat_id = values
        return datetime.fromisoformat(updated_at), uuid.UUID(chat_id)

    return unpack_cursor(cursor, parse)
