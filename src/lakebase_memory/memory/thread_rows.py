"""Where a thread's rows are, and deleting them all: the layer under the lifecycle
(`lifecycle.ThreadStore`), retention and the server's thread catalogue.

A thread's rows live in nine tables: LangGraph's `checkpoints`, `checkpoint_blobs` and
`checkpoint_writes` (in the checkpoint schema), the linear saver's
`ai_chatbot.checkpoint_messages` and `ai_chatbot.checkpoint_threads`, and the chat UI's
`ai_chatbot."Chat"`, `"Message"` and `"Vote"`, and its background responses
(`ai_chatbot.responses`, whose events cascade). `delete_thread_rows` is the one place that
knows them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg.rows import dict_row

from lakebase_memory.memory.thread_locks import LOCK_THREADS, lock_threads_params
from lakebase_memory.schema.app_migrations import CHAT_SCHEMA

THREADS = sql.Identifier(CHAT_SCHEMA, "checkpoint_threads")
LOG = sql.Identifier(CHAT_SCHEMA, "checkpoint_messages")
CHAT = sql.Identifier(CHAT_SCHEMA, "Chat")
CHAT_MESSAGE = sql.Identifier(CHAT_SCHEMA, "Message")
VOTE = sql.Identifier(CHAT_SCHEMA, "Vote")
RESPONSES = sql.Identifier(CHAT_SCHEMA, "responses")  # background responses (events cascade)


@dataclass(frozen=True)
class DeletionCounts:
    """Rows deleted, per table; `threads`: how many distinct threads had any row."""

    threads: int = 0
    checkpoints: int = 0
    checkpoint_blobs: int = 0
    checkpoint_writes: int = 0
    checkpoint_messages: int = 0
    chats: int = 0
    messages: int = 0
    votes: int = 0
    responses: int = 0

    def __add__(self, other: DeletionCounts) -> DeletionCounts:
        return DeletionCounts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def to_json(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _thread_deletes(checkpoint_schema: str) -> list[tuple[str | None, sql.Composable]]:
    """(count name, statement) in the order they run; each returns a row per row it touches.

    A `None` name: a step whose rows are not counted in `DeletionCounts`.
    """
    ids = sql.SQL("ANY(%(ids)s::text[])")

    def by_thread(table: sql.Identifier, column: str = "thread_id") -> sql.Composable:
        return sql.SQL("DELETE FROM {t} WHERE {c} = {ids} RETURNING {c} AS thread_id").format(
            t=table, c=sql.Identifier(column), ids=ids
        )

    def chat_children(table: sql.Identifier) -> sql.Composable:
        return sql.SQL(
            'DELETE FROM {t} x USING {chat} c WHERE x."chatId" = c.id AND c."threadId" = {ids} '
            'RETURNING c."threadId" AS thread_id'
        ).format(t=table, chat=CHAT, ids=ids)

    def checkpoint_table(name: str) -> sql.Identifier:
        return sql.Identifier(checkpoint_schema, name)

    return [
        # First the saver's head rows (locked already, see `delete_thread_rows`): without one
        # an in-flight turn's late write fails its lease check instead of reviving the thread.
        (None, by_thread(THREADS)),
        # Then the chats, locked before their children go: a concurrent copy of the messages
        # waits, instead of adding a "Message" row that the chat's delete would trip over (the
        # reference UI's tables have no ON DELETE CASCADE).
        (
            None,
            sql.SQL(
                'SELECT "threadId" AS thread_id FROM {chat} WHERE "threadId" = {ids} '
                "ORDER BY id FOR UPDATE"
            ).format(chat=CHAT, ids=ids),
        ),
        ("checkpoint_messages", by_thread(LOG)),
        ("checkpoints", by_thread(checkpoint_table("checkpoints"))),
        ("checkpoint_blobs", by_thread(checkpoint_table("checkpoint_blobs"))),
        ("checkpoint_writes", by_thread(checkpoint_table("checkpoint_writes"))),
        ("votes", chat_children(VOTE)),
        ("messages", chat_children(CHAT_MESSAGE)),
        ("chats", by_thread(CHAT, "threadId")),
        # The thread's background responses hold its text too; a running one's owner finds
        # its row gone and stops.
        ("responses", by_thread(RESPONSES)),
    ]


async def delete_thread_rows(
    conn: AsyncConnection[Any], thread_ids: Iterable[str], checkpoint_schema: str = "public"
) -> DeletionCounts:
    """Delete every row of these threads, in the caller's transaction; the rows deleted.

    The one place that knows all the tables of a thread. Run it inside `conn.transaction()`
    so that a thread disappears whole or not at all. The threads' head rows are locked first,
    all at once, in the order every maintenance path uses (`thread_locks.LOCK_THREADS`), so
    deleters, retention and the saver's maintenance on overlapping threads queue rather than
    deadlock; after that, the `= ANY` scans may visit rows in any order.
    """
    ids = list(set(thread_ids))  # the lock statement orders them
    if not ids:
        return DeletionCounts()
    async with conn.cursor(row_factory=dict_row) as cur:
        created = await _lock_heads(cur, ids)
        # Every id has a head row now: a thread had one unless the lock created it.
        touched = set(ids) - created
        counts: dict[str, int] = {}
        for name, statement in _thread_deletes(checkpoint_schema):
            await cur.execute(statement, {"ids": ids})
            rows = await cur.fetchall()
            if name is not None:
                counts[name] = len(rows)
                touched.update(row["thread_id"] for row in rows)
    return DeletionCounts(threads=len(touched), **counts)


async def _lock_heads(cur: AsyncCursor[dict[str, Any]], ids: Sequence[str]) -> set[str]:
    """Lock the threads' head rows (creating missing ones); the ids whose row it created."""
    await cur.execute(LOCK_THREADS, lock_threads_params(ids))
    return {row["thread_id"] for row in await cur.fetchall()}
