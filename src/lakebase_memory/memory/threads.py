"""The thread catalogue: who owns which thread, its title and activity, in `ai_chatbot."Chat"`.

A chat is an agent thread: `"threadId"` holds the thread id (any string) and `id` is that id
when it is a UUID, else a UUID derived from it, so the chat UI and the thread API agree.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from lakebase_memory.database.pool import Pool
from lakebase_memory.schema.app_migrations import CHECKPOINT_TABLES

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


class InvalidCursorError(ValueError):
    """A pagination cursor that this server did not produce."""


@dataclass(frozen=True)
class ThreadSummary:
    thread_id: str
    chat_id: uuid.UUID
    title: str
    user_id: str
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.thread_id,
            "chat_id": str(self.chat_id),
            "title": self.title,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class ThreadPage:
    threads: list[ThreadSummary]
    next_cursor: str | None


def chat_id_for(thread_id: str) -> uuid.UUID:
    # Only the canonical spelling is the chat id itself: "{...}" or upper-case forms of the
    # same UUID are other thread ids and get derived ids of their own.
    try:
        parsed = uuid.UUID(thread_id)
        if str(parsed) == thread_id:
            return parsed
    except ValueError:
        pass
    return uuid.uuid5(_DERIVED_ID_NAMESPACE, thread_id)


def title_from(text: str) -> str:
    words = " ".join(text.split())
    if not words:
        return UNTITLED
    return words if len(words) <= TITLE_MAX_CHARS else words[: TITLE_MAX_CHARS - 1] + "…"


_COLUMNS = sql.SQL('"threadId", id, title, "userId", "createdAt", "updatedAt"')
_CHAT = sql.Identifier("ai_chatbot", "Chat")


class ThreadCatalogue:
    """Per-user thread list on the app's pool. Every method is scoped to one user."""

    def __init__(self, pool: Pool, checkpoint_schema: str = "public") -> None:
        self._pool = pool
        self._checkpoint_schema = checkpoint_schema

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
        async with self._pool.connection() as conn:
            try:
                cursor = await conn.execute(
                    query,
                    (chat_id_for(thread_id), thread_id, title_from(first_text), user_id, now, now),
                )
            except psycopg.errors.UniqueViolation as error:
                raise ThreadConflictError(
                    f"Thread id '{thread_id}' maps to the chat id of another thread; "
                    "choose another id."
                ) from error
            row = await cursor.fetchone()
        if row is None:
            raise ThreadNotFoundError(thread_id)
        return _summary(row)

    async def get(self, thread_id: str, user_id: str) -> ThreadSummary:
        query = sql.SQL('SELECT {cols} FROM {chat} WHERE "threadId" = %s AND "userId" = %s').format(
            chat=_CHAT, cols=_COLUMNS
        )
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query, (thread_id, user_id))
            row = await cursor.fetchone()
        if row is None:
            raise ThreadNotFoundError(thread_id)
        return _summary(row)

    async def rename(self, thread_id: str, user_id: str, title: str) -> ThreadSummary:
        query = sql.SQL(
            'UPDATE {chat} SET title = %s WHERE "threadId" = %s AND "userId" = %s RETURNING {cols}'
        ).format(chat=_CHAT, cols=_COLUMNS)
        async with self._pool.connection() as conn:
            row = await (await conn.execute(query, (title, thread_id, user_id))).fetchone()
        if row is None:
            raise ThreadNotFoundError(thread_id)
        return _summary(row)

    async def exists(self, thread_id: str) -> bool:
        query = sql.SQL('SELECT 1 FROM {chat} WHERE "threadId" = %s').format(chat=_CHAT)
        async with self._pool.connection() as conn:
            return await (await conn.execute(query, (thread_id,))).fetchone() is not None

    async def list(self, user_id: str, *, limit: int = 20, cursor: str | None = None) -> ThreadPage:
        """The user's threads, most recently active first, `limit` at a time."""
        after = _decode_cursor(cursor) if cursor else None
        condition = sql.SQL('"userId" = %s')
        params: list[object] = [user_id]
        if after is not None:
            condition = sql.SQL('"userId" = %s AND ("updatedAt", id) < (%s, %s)')
            params += [after[0], after[1]]
        query = sql.SQL(
            'SELECT {cols} FROM {chat} WHERE {cond} ORDER BY "updatedAt" DESC, id DESC LIMIT %s'
        ).format(chat=_CHAT, cols=_COLUMNS, cond=condition)
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(query, [*params, limit + 1])).fetchall()
        threads = [_summary(row) for row in rows[:limit]]
        next_cursor = _encode_cursor(threads[-1]) if len(rows) > limit else None
        return ThreadPage(threads, next_cursor)

    async def delete(self, thread_id: str, user_id: str) -> None:
        """Delete the chat and the thread's checkpoints in one transaction."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                sql.SQL(
                    'SELECT id FROM {chat} WHERE "threadId" = %s AND "userId" = %s FOR UPDATE'
                ).format(chat=_CHAT),
                (thread_id, user_id),
            )
            row = await cursor.fetchone()
            if row is None:
                raise ThreadNotFoundError(thread_id)
            # Children first: the reference UI's own tables have no ON DELETE CASCADE.
            for table, column in (("Vote", "chatId"), ("Message", "chatId"), ("Chat", "id")):
                await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                        sql.Identifier("ai_chatbot", table), sql.Identifier(column)
                    ),
                    (row["id"],),
                )
            for table in CHECKPOINT_TABLES[1:]:
                await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE thread_id = %s").format(
                        sql.Identifier(self._checkpoint_schema, table)
                    ),
                    (thread_id,),
                )


def _summary(row: dict[str, object]) -> ThreadSummary:
    return ThreadSummary(
        thread_id=str(row["threadId"]),
        chat_id=row["id"],  # type: ignore[arg-type]
        title=str(row["title"]),
        user_id=str(row["userId"]),
        created_at=row["createdAt"],  # type: ignore[arg-type]
        updated_at=row["updatedAt"],  # type: ignore[arg-type]
    )


def utc_now() -> datetime:
    # The reference's columns are `timestamp` without time zone, holding UTC.
    return datetime.now(UTC).replace(tzinfo=None)


def _iso(value: datetime) -> str:
    return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _encode_cursor(last: ThreadSummary) -> str:
    raw = json.dumps([last.updated_at.isoformat(), str(last.chat_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        updated_at, chat_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(updated_at), uuid.UUID(chat_id)
    except (binascii.Error, ValueError, TypeError) as error:
        raise InvalidCursorError(
            f"Invalid cursor '{cursor}': pass the next_cursor value of the previous page."
        ) from error
