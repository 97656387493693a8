"""The SQL of background responses: `ai_chatbot.responses` and `ai_chatbot.response_events`.

Every write of a running response is fenced by its owner token: a process whose lease
expired (and whose response another process marked failed) writes nothing more, so a late
flush can neither revive a failed response nor collide with the sweeper's terminal event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

ACTIVE_STATUSES = ("queued", "in_progress")
FINISHED_STATUSES = ("completed", "failed", "cancelled")
TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.failed", "response.cancelled", "response.incomplete"}
)

COLUMNS = (
    "id, user_id, thread_id, status, created_at, finished_at, response, input, error, "
    "cancel_requested, lease_expires_at, (lease_expires_at < now()) AS lease_expired"
)


def new_response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class ResponseRow:
    id: str
    user_id: str
    thread_id: str
    status: str
    created_at: datetime
    finished_at: datetime | None
    response: dict[str, Any]
    input: list[dict[str, Any]]  # the turn's new input items
    error: dict[str, Any] | None
    cancel_requested: bool
    lease_expired: bool

    @classmethod
    def of(cls, row: dict[str, Any]) -> ResponseRow:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            thread_id=row["thread_id"],
            status=row["status"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            response=row["response"],
            input=row["input"],
            error=row["error"],
            cancel_requested=row["cancel_requested"],
            lease_expired=bool(row["lease_expired"]),
        )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def to_json(self) -> dict[str, Any]:
        """The Responses object: the stored snapshot with the row's status and error."""
        return {**self.response, "status": self.status, "error": self.error, "background": True}


class LostOwnershipError(Exception):
    """The response is no longer this process's: its lease expired and it was finished by
    another process, or it was deleted (its thread, or its user, was erased)."""


class ResponseRows:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def create(
        self, response_id: str, user_id: str, thread_id: str, response: dict[str, Any],
        owner: uuid.UUID, lease_seconds: float, input_items: list[dict[str, Any]],
    ) -> ResponseRow:  # fmt: skip
        row = await self._one(
            "INSERT INTO ai_chatbot.responses (id, user_id, thread_id, response, owner_token, "
            "lease_expires_at, input) "
            "VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s), %s) "
            f"RETURNING {COLUMNS}",
            (
                response_id,
                user_id,
                thread_id,
                Jsonb(response),
                owner,
                lease_seconds,
                Jsonb(input_items),
            ),
        )
        assert row is not None
        return ResponseRow.of(row)

    async def get(self, response_id: str, user_id: str) -> ResponseRow | None:
        """The user's response; None for an unknown id and for another user's alike."""
        row = await self._one(
            f"SELECT {COLUMNS} FROM ai_chatbot.responses WHERE id = %s AND user_id = %s",
            (response_id, user_id),
        )
        return None if row is None else ResponseRow.of(row)

    async def active_for_thread(self, thread_id: str, user_id: str) -> ResponseRow | None:
        """The thread's running background response (newest), if any."""
        row = await self._one(
            f"SELECT {COLUMNS} FROM ai_chatbot.responses WHERE thread_id = %s AND user_id = %s "
            "AND status IN ('queued', 'in_progress') ORDER BY created_at DESC LIMIT 1",
            (thread_id, user_id),
        )
        return None if row is None else ResponseRow.of(row)

    async def append(
        self,
        response_id: str,
        owner: uuid.UUID,
        events: Sequence[dict[str, Any]],
        snapshot: dict[str, Any],
        *,
        status: str = "in_progress",
        error: dict[str, Any] | None = None,
        lease_seconds: float,
    ) -> bool:
        """Store a batch of events and the response's snapshot in one transaction; with a
        finished `status`, end the response. Returns the cancel flag.

        Raises LostOwnershipError when the response is no longer this owner's."""
        finished = status in FINISHED_STATUSES
        async with self.pool.connection() as conn, conn.transaction():
            # The row first: it locks the response (the sweeper locks it too), so the owner
            # check and the inserts below are one step against it.
            cursor = await conn.execute(
                "UPDATE ai_chatbot.responses SET status = %s, response = %s, error = %s, "
                "updated_at = now(), lease_expires_at = now() + make_interval(secs => %s), "
                "finished_at = CASE WHEN %s THEN now() END, "
                "owner_token = CASE WHEN %s THEN NULL ELSE owner_token END "
                "WHERE id = %s AND owner_token = %s AND status IN ('queued', 'in_progress') "
                "RETURNING cancel_requested",
                (status, Jsonb(snapshot), None if error is None else Jsonb(error), lease_seconds,
                 finished, finished, response_id, owner),
            )  # fmt: skip
            row = await cursor.fetchone()
            if row is None:
                raise LostOwnershipError(response_id)
            await _insert_events(conn, response_id, events)
            return bool(row["cancel_requested"])

    async def request_cancel(self, response_id: str, user_id: str) -> None:
        await self._one(
            "UPDATE ai_chatbot.responses SET cancel_requested = true, updated_at = now() "
            "WHERE id = %s AND user_id = %s AND status IN ('queued', 'in_progress') "
            "RETURNING id",
            (response_id, user_id),
        )

    async def events_after(
        self, response_id: str, after: int, limit: int = 500
    ) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT event FROM ai_chatbot.response_events WHERE response_id = %s "
                "AND sequence_number > %s ORDER BY sequence_number LIMIT %s",
                (response_id, after, limit),
            )
            return [row["event"] for row in await cursor.fetchall()]

    async def abandon(
        self, status: str, error: dict[str, Any] | None, *, response_id: str | None = None,
        user_id: str | None = None, limit: int = 100,
    ) -> list[str]:  # fmt: skip
        """Finish responses whose owner's lease expired (all such, or the one given) with
        `status`, appending their terminal event; the ids finished.

        SKIP LOCKED: a row locked by its live owner's flush (or another sweeper) is left for
        the next sweep."""
        kind = "response.cancelled" if status == "cancelled" else "response.failed"
        async with self.pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT id, response FROM ai_chatbot.responses "
                "WHERE status IN ('queued', 'in_progress') AND lease_expires_at < now() "
                "AND (%(id)s::text IS NULL OR id = %(id)s) "
                "AND (%(user)s::text IS NULL OR user_id = %(user)s) "
                "ORDER BY lease_expires_at LIMIT %(n)s FOR UPDATE SKIP LOCKED",
                {"id": response_id, "user": user_id, "n": limit},
            )
            rows = await cursor.fetchall()
            for row in rows:
                last = await conn.execute(
                    "SELECT coalesce(max(sequence_number), -1) AS n "
                    "FROM ai_chatbot.response_events WHERE response_id = %s",
                    (row["id"],),
                )
                found = await last.fetchone()
                assert found is not None
                snapshot = {**row["response"], "status": status, "error": error}
                event = {"type": kind, "sequence_number": found["n"] + 1, "response": snapshot}
                await _insert_events(conn, row["id"], [event])
                await conn.execute(
                    "UPDATE ai_chatbot.responses SET status = %s, error = %s, "
                    "response = %s, finished_at = now(), updated_at = now(), owner_token = NULL "
                    "WHERE id = %s",
                    (status, None if error is None else Jsonb(error), Jsonb(snapshot), row["id"]),
                )
            return [row["id"] for row in rows]

    async def delete_finished_before(self, hours: float, limit: int = 500) -> int:
        """Delete finished responses older than `hours` (their events cascade); how many."""
        total = 0
        while True:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    "DELETE FROM ai_chatbot.responses WHERE id IN (SELECT id FROM "
                    "ai_chatbot.responses WHERE finished_at < now() - make_interval(secs => %s) "
                    "LIMIT %s)",
                    (hours * 3600, limit),
                )
                total += cursor.rowcount
                if cursor.rowcount < limit:
                    return total

    async def _one(self, query: str, params: Sequence[Any]) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(query, params)  # type: ignore[arg-type]
            row: dict[str, Any] | None = await cursor.fetchone()
            return row


async def _insert_events(conn: Any, response_id: str, events: Sequence[dict[str, Any]]) -> None:
    """Store `events` (each with its sequence_number) of the response, in one statement."""
    if not events:
        return
    await conn.execute(
        "INSERT INTO ai_chatbot.response_events (response_id, sequence_number, event) "
        "SELECT %s, s, e FROM unnest(%s::integer[], %s::jsonb[]) AS u(s, e)",
        (response_id, [e["sequence_number"] for e in events], [Jsonb(e) for e in events]),
    )
