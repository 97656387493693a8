"""A thread's head row (locked first, restored after a move) and what the thread holds:
stock-format message lists, log references, its bytes on disk."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from lakebase_memory.memory.saver.aio import AsyncLinearPostgresSaver
from lakebase_memory.memory.saver.codec import REF_TYPES, is_message_list
from lakebase_memory.memory.saver.transfer.batches import (
    first_column,
)
from lakebase_memory.memory.saver.transfer.report import (
    HEADS,
    KEPT_HEAD_COLUMNS,
    LOG,
    ReadCheckpoint,
    SkipThread,
)

# Rows deserialized at a time while looking for a stock-format message list: a stock thread
# shows one in its first rows, and a long one holds hundreds of megabytes of them.
PROBE_PAGE = 50


async def lock_head(conn: AsyncConnection[Any], thread_id: str) -> dict[str, Any] | None:
    """Lock the thread against linear writers; its head row as it was, None if it had none.

    A thread without a head row gets one for the transaction's length, so that a linear
    writer arriving meanwhile waits for the move instead of writing beside it. A thread in
    the middle of a turn is skipped: the turn will write again.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"INSERT INTO {HEADS} (thread_id) VALUES (%s) ON CONFLICT (thread_id) DO NOTHING "
            "RETURNING thread_id",
            (thread_id,),
        )
        created = await cur.fetchone() is not None
        await cur.execute(
            f"SELECT to_jsonb(h) AS head, now() AS now FROM {HEADS} h "
            "WHERE thread_id = %s FOR UPDATE",
            (thread_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    head: dict[str, Any] = row["head"]
    expires = head.get("turn_expires_at")
    if head.get("turn_id") and expires and dt.datetime.fromisoformat(expires) > row["now"]:
        raise SkipThread("a turn is running on it: run the command again when it has ended")
    return None if created else head


async def restore_head(
    conn: AsyncConnection[Any],
    thread_id: str,
    head: dict[str, Any] | None,
    checkpoints: list[ReadCheckpoint],
) -> None:
    """Give the rewritten thread back its owner, creation time and last activity.

    The saver recreated the head row as for a new thread (now, no owner): retention by age
    and per-user listings would see every imported thread as new. A thread that had no head
    row dates from its checkpoints, and its owner is its chat's.
    """
    stamps = [c.item.checkpoint.get("ts") for c in checkpoints if c.item.checkpoint.get("ts")]
    if head is not None:
        values = {c: head.get(c) for c in KEPT_HEAD_COLUMNS}
    else:
        values = {
            "user_id": None,
            "created_at": min(stamps, default=None),
            "updated_at": max(stamps, default=None),
        }
    assignments: list[sql.Composable] = []
    params: list[Any] = []
    for column in KEPT_HEAD_COLUMNS:
        if column == "user_id":
            assignments.append(
                sql.SQL(
                    'user_id = coalesce(%s::text, h.user_id, (SELECT c."userId" '
                    'FROM ai_chatbot."Chat" c WHERE c."threadId" = h.thread_id))'
                )
            )
            params.append(values["user_id"])
        elif values.get(column) is not None:
            assignments.append(sql.SQL("{} = %s::timestamptz").format(sql.Identifier(column)))
            params.append(values[column])
    if not assignments:
        return
    statement = sql.SQL("UPDATE {} h SET {} WHERE h.thread_id = %s").format(
        sql.SQL(HEADS), sql.SQL(", ").join(assignments)
    )
    await conn.execute(statement, [*params, thread_id])


# -- what a thread holds ---------------------------------------------------------------------


async def has_stock_messages(
    conn: AsyncConnection[Any], saver: AsyncLinearPostgresSaver, thread_id: str
) -> bool:
    """Whether a channel value of the thread is a message list stored in the stock format.

    Those are what makes a stock thread grow with the square of its length, and what the
    linear format never stores as a plain blob. Pending writes are not looked at: each holds
    a step's new messages only, and the linear saver stores them as the stock saver does.
    Blobs are read a page at a time (in primary key order); the search stops at the first hit.
    """
    key = ("checkpoint_ns", "channel", "version")
    columns = sql.SQL(", ").join(map(sql.Identifier, key))
    plain = [*REF_TYPES, "empty", "null"]  # types that cannot hold a stock message list
    after: list[Any] = []
    async with conn.cursor(binary=True, row_factory=dict_row) as cur:
        while True:
            page_after = sql.SQL("")
            if after:
                page_after = sql.SQL("AND ({}) > (%s, %s, %s)").format(columns)
            await cur.execute(
                sql.SQL(
                    "SELECT {columns}, type, blob FROM checkpoint_blobs "
                    "WHERE thread_id = %s AND type <> ALL(%s) {page_after} "
                    "ORDER BY {columns} LIMIT %s"
                ).format(columns=columns, page_after=page_after),
                [thread_id, plain, *after, PROBE_PAGE],
            )
            page = await cur.fetchall()
            for row in page:
                if is_message_list(saver.serde.loads_typed((row["type"], row["blob"]))):
                    return True
            if len(page) < PROBE_PAGE:
                return False
            after = [page[-1][column] for column in key]


async def has_references(conn: AsyncConnection[Any], thread_id: str) -> bool:
    """Whether the thread has linear-format rows: log references or log entries."""
    cursor = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM checkpoint_blobs WHERE thread_id = %s AND type = ANY(%s))"
        " OR EXISTS (SELECT 1 FROM checkpoint_writes WHERE thread_id = %s AND type = ANY(%s))"
        f" OR EXISTS (SELECT 1 FROM {LOG} WHERE thread_id = %s)",
        (thread_id, list(REF_TYPES), thread_id, list(REF_TYPES), thread_id),
    )
    row = await cursor.fetchone()
    return bool(row and first_column(row))


async def thread_exists(conn: AsyncConnection[Any], thread_id: str) -> bool:
    cursor = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM checkpoints WHERE thread_id = %s)", (thread_id,)
    )
    row = await cursor.fetchone()
    return bool(row and first_column(row))


async def thread_bytes(
    conn: AsyncConnection[Any], thread_id: str, *, log: bool, head: bool = True
) -> int:
    """The size of the thread's rows (`pg_column_size`: compressed values count compressed).

    `log`: the database has the linear format's tables; `head`: count the head row.
    """
    tables = ["checkpoints", "checkpoint_blobs", "checkpoint_writes"]
    if log:
        tables += [LOG, HEADS] if head else [LOG]
    parts = [
        f"(SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM {t} t WHERE t.thread_id = %s)"
        for t in tables
    ]
    cursor = await conn.execute(
        "SELECT (" + " + ".join(parts) + ")::bigint", [thread_id] * len(tables)
    )
    row = await cursor.fetchone()
    return int(first_column(row)) if row else 0


async def has_stock_tables(conn: AsyncConnection[Any]) -> bool:
    cursor = await conn.execute(
        "SELECT to_regclass('checkpoints') IS NOT NULL "
        "AND to_regclass('checkpoint_blobs') IS NOT NULL "
        "AND to_regclass('checkpoint_writes') IS NOT NULL"
    )
    row = await cursor.fetchone()
    return bool(row and first_column(row))
