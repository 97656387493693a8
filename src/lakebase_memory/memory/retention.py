"""Retention: delete threads by age and by count per user, or cut old threads' history, and
delete the long-term memories whose TTL has passed, in batches (issue 6).

Each rule walks an index of `ai_chatbot.checkpoint_threads`, a batch at a time, one
transaction per batch, so a pass never holds thousands of locks and a crash loses at most one
batch of work:

- by age: threads whose last activity is older than the cutoff, oldest first
  (`checkpoint_threads_activity_idx`);
- by count: per user, everything after the newest N (`checkpoint_threads_user_activity_idx`,
  one probe per user, users walked in order);
- history: old threads keep only their latest checkpoint (the linear saver's
  `aprune(..., strategy="keep_latest")`), the conversation stays readable and continuable;
- expired memories: the memory store's items whose `expires_at` has passed, oldest first
  (`store_rows`); the store never reads them (`omit_expired`), this frees their space as
  LangGraph's `sweep_ttl` does, but in batches.

Deletions lock the threads' rows with `FOR UPDATE SKIP LOCKED`, so a thread being written
right now (or claimed by another replica) is left for the next pass, and threads with a live
turn lease are never touched. A pass holds a session advisory lock: when several replicas run
retention, one works and the others skip that round instead of fighting over the same rows.

Threads without a `checkpoint_threads` row (written only by LangGraph's stock saver, never
since) and threads without an owner (`user_id` NULL, for the per-user rule) are out of reach.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row, tuple_row

from lakebase_memory.memory.store_rows import count_expired_memories, delete_expired_memories
from lakebase_memory.memory.thread_rows import THREADS, DeletionCounts, delete_thread_rows

logger = logging.getLogger(__name__)

RETENTION_LOCK_KEY = 7_061_043_411_552_114  # "lakebase-memory retention", any fixed bigint
BEGINNING = datetime(1, 1, 1, tzinfo=UTC)
_FREE = sql.SQL("(h.turn_expires_at IS NULL OR h.turn_expires_at <= now())")


@dataclass(frozen=True)
class RetentionPolicy:
    """What to keep. Unset rules do nothing; a policy with no rule is inactive.

    Attributes:
        max_age_days: threads whose last activity is older than this are deleted.
        max_threads_per_user: each user keeps their N most recently active threads.
        keep_latest_checkpoint: threads older than `max_age_days` are not deleted but keep
            only their latest checkpoint (their history and time travel go, the conversation
            stays).
        expire_memories: delete the memory store's items whose TTL has passed.
    """

    max_age_days: float | None = None
    max_threads_per_user: int | None = None
    keep_latest_checkpoint: bool = False
    expire_memories: bool = False

    def __post_init__(self) -> None:
        if self.max_age_days is not None and self.max_age_days <= 0:
            raise ValueError(f"max_age_days must be positive, got {self.max_age_days}")
        if self.max_threads_per_user is not None and self.max_threads_per_user < 1:
            raise ValueError(
                f"max_threads_per_user must be at least 1, got {self.max_threads_per_user}"
            )
        if self.keep_latest_checkpoint and self.max_age_days is None:
            raise ValueError(
                "keep_latest_checkpoint applies to threads older than max_age_days: set it too"
            )

    @property
    def active(self) -> bool:
        return (
            self.max_age_days is not None
            or self.max_threads_per_user is not None
            or self.expire_memories
        )

    def describe(self) -> str:
        rules = []
        if self.max_age_days is not None:
            action = "keep only the latest checkpoint of" if self.keep_latest_checkpoint else (
                "delete"
            )  # fmt: skip
            rules.append(f"{action} threads inactive for over {self.max_age_days:g} days")
        if self.max_threads_per_user is not None:
            rules.append(f"keep the {self.max_threads_per_user} newest threads of each user")
        if self.expire_memories:
            rules.append("delete expired memories")
        return "; ".join(rules) or "no rule"


@dataclass(frozen=True)
class RetentionReport:
    """What a pass did (or, in a dry run, would do)."""

    dry_run: bool = False
    expired: int = 0  # threads deleted for their age
    excess: int = 0  # threads deleted beyond a user's count
    trimmed: int = 0  # old threads cut to their latest checkpoint
    memories: int = 0  # expired memory-store items deleted
    batches: int = 0
    deleted: DeletionCounts = field(default_factory=DeletionCounts)
    skipped: bool = False  # another process was applying retention: nothing done

    @property
    def changed(self) -> int:
        return self.expired + self.excess + self.trimmed + self.memories

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "expired": self.expired,
            "excess": self.excess,
            "trimmed": self.trimmed,
            "memories": self.memories,
            "batches": self.batches,
            "deleted": self.deleted.to_json(),
            "skipped": self.skipped,
        }


def expired_batch_query() -> sql.Composable:
    """The oldest threads past the cutoff, locked; an index scan of the activity index."""
    return sql.SQL(
        "SELECT h.thread_id FROM {threads} h WHERE h.updated_at < %(cutoff)s AND {free} "
        "ORDER BY h.updated_at, h.thread_id LIMIT %(n)s FOR UPDATE SKIP LOCKED"
    ).format(threads=THREADS, free=_FREE)


def _users(start: sql.Composable) -> sql.Composable:
    # A loose index scan: each step jumps to the next user in the per-user index, so walking
    # the users costs one probe each, not a read of every thread.
    return sql.SQL(
        """WITH RECURSIVE users(user_id) AS (
    (SELECT user_id FROM {threads} WHERE user_id >= {start} ORDER BY user_id LIMIT 1)
    UNION ALL
    SELECT (SELECT t.user_id FROM {threads} t WHERE t.user_id > u.user_id
            ORDER BY t.user_id LIMIT 1)
    FROM users u WHERE u.user_id IS NOT NULL
)"""
    ).format(threads=THREADS, start=start)


_BEYOND_KEEP = sql.SQL(
    """CROSS JOIN LATERAL (
    SELECT e.thread_id, e.updated_at FROM {threads} e
    WHERE e.user_id = u.user_id AND e.updated_at >= %(floor)s
    ORDER BY e.updated_at DESC, e.thread_id
    OFFSET %(keep)s
) x"""
).format(threads=THREADS)


def excess_batch_query() -> sql.Composable:
    """Per user from `from_user` on, the threads after their newest `keep`, locked."""
    return sql.SQL(
        """{users}
SELECT h.thread_id, h.user_id FROM users u {beyond}
JOIN {threads} h ON h.thread_id = x.thread_id
WHERE h.updated_at = x.updated_at AND {free}
LIMIT %(n)s FOR UPDATE OF h SKIP LOCKED"""
    ).format(
        users=_users(sql.SQL("%(from_user)s")), beyond=_BEYOND_KEEP, threads=THREADS, free=_FREE
    )


def _trim_query(checkpoint_schema: str, *, count: bool) -> sql.Composable:
    has_history = sql.SQL(
        "EXISTS (SELECT 1 FROM {checkpoints} c WHERE c.thread_id = h.thread_id "
        "AND c.parent_checkpoint_id IS NOT NULL)"
    ).format(checkpoints=sql.Identifier(checkpoint_schema, "checkpoints"))
    if count:
        return sql.SQL(
            "SELECT count(*) AS n FROM {threads} h WHERE h.updated_at < %(cutoff)s AND {history}"
        ).format(threads=THREADS, history=has_history)
    # After a trim no checkpoint has a parent: a thread is trimmed once, not at every pass.
    return sql.SQL(
        "SELECT h.thread_id, h.updated_at FROM {threads} h "
        "WHERE h.updated_at < %(cutoff)s AND (h.updated_at, h.thread_id) > (%(at)s, %(id)s) "
        "AND {free} AND {history} ORDER BY h.updated_at, h.thread_id LIMIT %(n)s"
    ).format(threads=THREADS, free=_FREE, history=has_history)


async def apply_retention(
    conn: AsyncConnection[Any],
    policy: RetentionPolicy,
    *,
    checkpoint_schema: str = "public",
    batch_size: int = 500,
    dry_run: bool = False,
) -> RetentionReport:
    """Apply `policy` on `conn` (autocommit); counts of what was done.

    Age first, then count: a thread deleted for its age does not count towards its user's N.
    A dry run counts the same threads and changes nothing.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not policy.active:
        return RetentionReport(dry_run=dry_run)
    cutoff = None
    if policy.max_age_days is not None:
        cutoff = datetime.now(UTC) - timedelta(days=policy.max_age_days)
    if dry_run:
        return await _dry_run(conn, policy, cutoff, checkpoint_schema)
    async with _retention_lock(conn) as acquired:
        if not acquired:
            return RetentionReport(skipped=True)
        return await _apply(conn, policy, cutoff, checkpoint_schema, batch_size)


async def _apply(
    conn: AsyncConnection[Any],
    policy: RetentionPolicy,
    cutoff: datetime | None,
    checkpoint_schema: str,
    batch_size: int,
) -> RetentionReport:
    expired = excess = trimmed = batches = 0
    deleted = DeletionCounts()
    if cutoff is not None and not policy.keep_latest_checkpoint:
        while True:
            rows, counts = await _delete_batch(
                conn, expired_batch_query(), {"cutoff": cutoff, "n": batch_size}, checkpoint_schema
            )
            expired, deleted = expired + len(rows), deleted + counts
            batches += bool(rows)
            if len(rows) < batch_size:
                break
    if cutoff is not None and policy.keep_latest_checkpoint:
        trimmed, trim_batches = await _trim(conn, cutoff, checkpoint_schema, batch_size)
        batches += trim_batches
    if policy.max_threads_per_user is not None:
        params: dict[str, Any] = {
            "from_user": "",
            "floor": BEGINNING,
            "keep": policy.max_threads_per_user,
            "n": batch_size,
        }
        while True:
            rows, counts = await _delete_batch(
                conn, excess_batch_query(), params, checkpoint_schema
            )
            excess, deleted = excess + len(rows), deleted + counts
            batches += bool(rows)
            if len(rows) < batch_size:
                break
            params["from_user"] = rows[-1]["user_id"]  # that user may have more beyond `keep`
    memories = 0
    if policy.expire_memories:
        memories, memory_batches = await delete_expired_memories(
            conn, schema=checkpoint_schema, batch_size=batch_size
        )
        batches += memory_batches
    return RetentionReport(
        expired=expired,
        excess=excess,
        trimmed=trimmed,
        memories=memories,
        batches=batches,
        deleted=deleted,
    )


async def _delete_batch(
    conn: AsyncConnection[Any], select: sql.Composable, params: dict[str, Any], schema: str
) -> tuple[list[dict[str, Any]], DeletionCounts]:
    """One batch, one transaction: lock the chosen threads' rows, delete all of them."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(select, params)
        rows = await cur.fetchall()
        counts = await delete_thread_rows(conn, [r["thread_id"] for r in rows], schema)
    return rows, counts


async def _trim(
    conn: AsyncConnection[Any], cutoff: datetime, checkpoint_schema: str, batch_size: int
) -> tuple[int, int]:
    """Old threads with history keep their latest checkpoint; (threads trimmed, batches)."""
    # Imported here: the saver package is heavier than listing and deleting need.
    from lakebase_memory.memory.saver import AsyncLinearPostgresSaver

    saver = AsyncLinearPostgresSaver(conn, cache_threads=0)
    trimmed = batches = 0
    after: tuple[datetime, str] = (BEGINNING, "")
    async with _search_path(conn, checkpoint_schema):
        while True:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    _trim_query(checkpoint_schema, count=False),
                    {"cutoff": cutoff, "at": after[0], "id": after[1], "n": batch_size},
                )
                rows = await cur.fetchall()
            if not rows:
                break
            # One transaction per thread, in the saver: each waits for that thread's writer.
            await saver.aprune([r["thread_id"] for r in rows], strategy="keep_latest")
            trimmed, batches = trimmed + len(rows), batches + 1
            after = (rows[-1]["updated_at"], rows[-1]["thread_id"])
            if len(rows) < batch_size:
                break
    return trimmed, batches


async def _dry_run(
    conn: AsyncConnection[Any],
    policy: RetentionPolicy,
    cutoff: datetime | None,
    checkpoint_schema: str,
) -> RetentionReport:
    expired = excess = trimmed = 0
    deletes_old = cutoff is not None and not policy.keep_latest_checkpoint
    async with conn.cursor(row_factory=dict_row) as cur:
        if cutoff is not None and deletes_old:
            await cur.execute(
                sql.SQL("SELECT count(*) AS n FROM {} WHERE updated_at < %(cutoff)s").format(
                    THREADS
                ),
                {"cutoff": cutoff},
            )
            expired = (await cur.fetchall())[0]["n"]
        if cutoff is not None and policy.keep_latest_checkpoint:
            await cur.execute(_trim_query(checkpoint_schema, count=True), {"cutoff": cutoff})
            trimmed = (await cur.fetchall())[0]["n"]
        if policy.max_threads_per_user is not None:
            # The threads the age rule leaves, ranked per user, as the real pass does.
            count = sql.SQL("{users} SELECT count(*) AS n FROM users u {beyond}").format(
                users=_users(sql.SQL("''")), beyond=_BEYOND_KEEP
            )
            floor = cutoff if deletes_old and cutoff is not None else BEGINNING
            await cur.execute(count, {"floor": floor, "keep": policy.max_threads_per_user})
            excess = (await cur.fetchall())[0]["n"]
    memories = 0
    if policy.expire_memories:
        memories = await count_expired_memories(conn, schema=checkpoint_schema)
    return RetentionReport(
        dry_run=True, expired=expired, excess=excess, trimmed=trimmed, memories=memories
    )


@asynccontextmanager
async def _retention_lock(conn: AsyncConnection[Any]) -> AsyncIterator[bool]:
    """The session advisory lock of a retention pass; yields whether this process got it."""
    acquired = bool(await _scalar(conn, "SELECT pg_try_advisory_lock(%s)", RETENTION_LOCK_KEY))
    try:
        yield acquired
    finally:
        if acquired:
            try:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK_KEY,))
            except Exception as error:  # a broken session released it already
                logger.debug("releasing the retention lock failed: %s", error)


@asynccontextmanager
async def _search_path(conn: AsyncConnection[Any], schema: str) -> AsyncIterator[None]:
    """The saver names its tables without a schema: point the session at `schema` meanwhile."""
    if schema == "public":
        yield
        return
    previous = await _scalar(conn, "SELECT current_setting('search_path')")
    await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    try:
        yield
    finally:
        await conn.execute("SELECT set_config('search_path', %s, false)", (previous,))


async def _scalar(conn: AsyncConnection[Any], query: str, *params: object) -> Any:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params or None)
        row = await cur.fetchone()
    return row[0] if row else None
