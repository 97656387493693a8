"""The chat's `"Message"` rows and `"Vote"`s: the reference UI's tables, kept in step with
the agent's thread.

The thread's checkpoints are the truth; after every turn the messages the `"Message"` table
does not have yet are added, with ids derived from the agent's message ids, so a vote and
the thread API refer to the same message. Re-running the sync adds nothing twice.

A turn only appends to a thread, so each process remembers, per chat, how many messages of
the thread it has synced and the first and last one's ids: the next sync sends only what
follows them, and its cost does not grow with the thread (turns of other processes append
too, and are in what follows). When that no longer matches (history removed or rewritten,
the chat deleted and made again, a restart), the whole thread is looked up again; so is a
forked thread whose messages already have rows in the original's chat, at every sync.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from psycopg import sql

from lakebase_memory.database.pool import Pool
from lakebase_memory.database.reconnect import repeatable
from lakebase_memory.memory.history import message_text
from lakebase_memory.memory.thread_rows import CHAT, CHAT_MESSAGE, VOTE
from lakebase_memory.memory.threads import ThreadNotFoundError, chat_id_for, utc_now, uuid_for

_MESSAGE_ID_NAMESPACE = uuid.UUID("3b0f7c1e-5a1d-4c7b-8e2f-9d6a4b1c0e21")
_MESSAGE, _VOTE, _CHAT = CHAT_MESSAGE, VOTE, CHAT
ROLES = {"human": "user", "ai": "assistant", "tool": "tool", "system": "system"}


class MessageNotFoundError(LookupError):
    def __init__(self, message_id: str) -> None:
        super().__init__(f"No message '{message_id}' in this thread.")


def message_uuid(message: BaseMessage) -> uuid.UUID:
    """The `"Message".id` of an agent message: its own id when that is a canonical UUID."""
    return uuid_for(message.id or "", _MESSAGE_ID_NAMESPACE)


def message_parts(message: BaseMessage) -> list[dict[str, object]]:
    parts: list[dict[str, object]] = []
    text = message_text(message)
    if text:
        parts.append({"type": "text", "text": text})
    if isinstance(message, AIMessage):
        parts += [
            {"type": "tool-call", "toolCallId": c["id"], "toolName": c["name"], "args": c["args"]}
            for c in message.tool_calls
        ]
    if isinstance(message, ToolMessage):
        parts.append({"type": "tool-result", "toolCallId": message.tool_call_id})
    return parts


# Chats whose synced prefix a process remembers (least recently synced forgotten first).
SYNCED_CHATS = 10_000


@dataclass(frozen=True)
class SyncedPrefix:
    """The first `count` messages of a thread are in the chat, from `first` to `last`."""

    count: int
    first: uuid.UUID
    last: uuid.UUID

    @classmethod
    def of(cls, messages: Sequence[BaseMessage], count: int | None = None) -> SyncedPrefix | None:
        """The first `count` messages (all by default); None if an end has no id."""
        count = len(messages) if count is None else count
        if not 0 < count <= len(messages):
            return None
        first, last = messages[0], messages[count - 1]
        if not first.id or not last.id:
            return None
        return cls(count, message_uuid(first), message_uuid(last))


class ChatMessages:
    def __init__(self, pool: Pool, *, remember_chats: int = SYNCED_CHATS) -> None:
        self.pool = pool
        self._remember_chats = remember_chats
        # (thread id, the chat row's creation time) -> what the table has of the thread
        self._synced: OrderedDict[tuple[str, datetime], SyncedPrefix] = OrderedDict()

    @repeatable
    async def sync(
        self,
        thread_id: str,
        messages: Sequence[BaseMessage],
        *,
        chat_created_at: datetime | None = None,
    ) -> int:
        """Add the thread's messages the chat does not have yet; returns how many.

        `chat_created_at` (the chat row's, from `ThreadCatalogue.claim`) lets the next sync
        of the same chat send only the messages after this one's.
        """
        chat_id = chat_id_for(thread_id)
        key = (thread_id, chat_created_at) if chat_created_at is not None else None
        start = self._known_prefix(key, messages)
        ids = {message_uuid(m): m for m in messages[start:] if m.id}
        if not ids:
            return 0
        added, complete = await self._add_missing(chat_id, ids)
        if key is not None and complete and (prefix := SyncedPrefix.of(messages)) is not None:
            self._remember(key, prefix)
        return added

    def _known_prefix(
        self, key: tuple[str, datetime] | None, messages: Sequence[BaseMessage]
    ) -> int:
        """How many leading messages are known to be in the chat (0 when unsure)."""
        known = self._synced.get(key) if key is not None else None
        if known is None or SyncedPrefix.of(messages, known.count) != known:
            return 0
        return known.count

    def _remember(self, key: tuple[str, datetime], prefix: SyncedPrefix) -> None:
        self._synced[key] = prefix
        self._synced.move_to_end(key)
        while len(self._synced) > self._remember_chats:
            self._synced.popitem(last=False)

    async def _add_missing(
        self, chat_id: uuid.UUID, ids: dict[uuid.UUID, BaseMessage]
    ) -> tuple[int, bool]:
        """Insert the messages the chat lacks: (how many were added, whether the chat now
        has them all). Not all when the chat row is gone (a thread deleted meanwhile gets
        nothing) or a message's row belongs to another chat (a fork's)."""
        async with self.pool.connection() as conn, conn.transaction():
            # Looked up by primary key, not by reading every row of the chat.
            cursor = await conn.execute(
                sql.SQL('SELECT id FROM {} WHERE "chatId" = %s AND id = ANY(%s)').format(_MESSAGE),
                (chat_id, list(ids)),
            )
            present = {row["id"] for row in await cursor.fetchall()}
            missing = [m for key, m in ids.items() if key not in present]
            if not missing:
                return 0, True
            now = utc_now()
            rows = [
                (message_uuid(m), chat_id, ROLES.get(m.type, m.type), json.dumps(message_parts(m)),
                 "[]", now + timedelta(microseconds=i))
                for i, m in enumerate(missing)
            ]  # fmt: skip
            async with conn.cursor() as cur:
                await cur.executemany(
                    sql.SQL(
                        'INSERT INTO {} (id, "chatId", role, parts, attachments, "createdAt") '
                        "SELECT %s, %s, %s, %s, %s, %s "
                        "WHERE EXISTS (SELECT 1 FROM {} WHERE id = %s) "
                        "ON CONFLICT (id) DO NOTHING"
                    ).format(_MESSAGE, _CHAT),
                    [(*row, chat_id) for row in rows],
                )
                # Summed over the statements; 0 if the chat row was gone.
                inserted = cur.rowcount
            return inserted, inserted == len(missing)

    @repeatable
    async def votes(self, thread_id: str) -> dict[str, bool]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                sql.SQL('SELECT "messageId", "isUpvoted" FROM {} WHERE "chatId" = %s').format(
                    _VOTE
                ),
                (chat_id_for(thread_id),),
            )
            return {
                str(row["messageId"]): bool(row["isUpvoted"]) for row in await cursor.fetchall()
            }

    @repeatable
    async def vote(self, thread_id: str, user_id: str, message_id: str, up: bool | None) -> None:
        """Thumbs up (True), down (False) or neither (None) on one of the user's messages."""
        chat_id = chat_id_for(thread_id)
        try:
            target = uuid.UUID(message_id)
        except ValueError as error:
            raise MessageNotFoundError(message_id) from error
        async with self.pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                sql.SQL(
                    'SELECT m.id FROM {m} m JOIN {c} c ON c.id = m."chatId" '
                    'WHERE m.id = %s AND c.id = %s AND c."userId" = %s'
                ).format(m=_MESSAGE, c=_CHAT),
                (target, chat_id, user_id),
            )
            if await cursor.fetchone() is None:
                owner = await conn.execute(
                    sql.SQL('SELECT 1 FROM {} WHERE id = %s AND "userId" = %s').format(_CHAT),
                    (chat_id, user_id),
                )
                if await owner.fetchone() is None:
                    raise ThreadNotFoundError(thread_id)
                raise MessageNotFoundError(message_id)
            if up is None:
                await conn.execute(
                    sql.SQL('DELETE FROM {} WHERE "chatId" = %s AND "messageId" = %s').format(
                        _VOTE
                    ),
                    (chat_id, target),
                )
            else:
                await conn.execute(
                    sql.SQL(
                        'INSERT INTO {} ("chatId", "messageId", "isUpvoted") VALUES (%s, %s, %s) '
                        'ON CONFLICT ("chatId", "messageId") DO UPDATE SET "isUpvoted" = %s'
                    ).format(_VOTE),
                    (chat_id, target, up, up),
                )
