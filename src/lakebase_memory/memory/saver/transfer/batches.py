"""Which threads a move visits (named, or all of them a batch at a time), on which
connection, each in its own transaction, with its result recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.base import CheckpointTuple
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from lakebase_memory.database.borrow import borrow
from lakebase_memory.memory.saver.ops import MessageLogError
from lakebase_memory.memory.saver.transfer.report import (
    MoveThread,
    OnThread,
    ReadCheckpoint,
    SkipThread,
    Source,
    Status,
    ThreadResult,
    TransferError,
    TransferReport,
    UnknownThreadError,
)


async def _threads(
    conn: AsyncConnection[Any], thread_ids: Sequence[str] | None, batch_size: int
) -> AsyncIterator[str]:
    """The named threads (all checked to exist first), or every thread, a page at a time."""
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread ids, not a str")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if thread_ids is not None:
        wanted = list(dict.fromkeys(str(t) for t in thread_ids))
        cursor = await conn.execute(
            "SELECT t FROM unnest(%s::text[]) AS t "
            "WHERE NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = t)",
            (wanted,),
        )
        if unknown := [first_column(row) for row in await cursor.fetchall()]:
            raise UnknownThreadError(unknown)
        for thread_id in wanted:
            yield thread_id
        return
    after = ""
    while True:
        cursor = await conn.execute(
            "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id > %s "
            "ORDER BY thread_id LIMIT %s",
            (after, batch_size),
        )
        page = [first_column(row) for row in await cursor.fetchall()]
        for thread_id in page:
            yield thread_id
        if len(page) < batch_size:
            return
        after = page[-1]


@asynccontextmanager
async def connection_of(source: Source) -> AsyncIterator[AsyncConnection[Any]]:
    """One connection for the whole run: each thread's transaction must be on one session."""
    async with borrow(source, "moving threads") as conn:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            raise ValueError("the connection is inside a transaction: pass an idle connection")
        yield conn


async def move_each(
    conn: AsyncConnection[Any],
    thread_ids: Sequence[str] | None,
    batch_size: int,
    report: TransferReport,
    on_thread: OnThread | None,
    status: Status,
    move: MoveThread,
) -> None:
    """Move each thread with `move`, one after the other, and record what happened to it.

    `move` returns the thread's checkpoints and its sizes before and after, or raises `SkipThread`
    to leave it as it is; a `TransferError` or `MessageLogError` marks the thread failed and
    the run goes on with the next one.
    """
    async for thread_id in _threads(conn, thread_ids, batch_size):
        try:
            checkpoints, before, after = await move(thread_id)
        except SkipThread as skip:
            result = ThreadResult(thread_id, "skipped", skip.reason)
        except (TransferError, MessageLogError) as error:
            result = ThreadResult(thread_id, "failed", str(error))
        else:
            result = _moved(thread_id, status, checkpoints, before, after)
        _record(report, on_thread, result)


def _moved(
    thread_id: str,
    status: Status,
    checkpoints: list[ReadCheckpoint],
    before: int,
    after: int | None,
) -> ThreadResult:
    writes = sum(len(w) for c in checkpoints for _, _, w in c.calls)
    return ThreadResult(thread_id, status, "", len(checkpoints), writes, before, after)


def _record(report: TransferReport, on_thread: OnThread | None, result: ThreadResult) -> None:
    report.threads.append(result)
    if on_thread is not None:
        on_thread(result)


def namespace_of(item: CheckpointTuple) -> str:
    return str(item.config["configurable"].get("checkpoint_ns", ""))


def first_column(row: Any) -> Any:
    """The first column of a row from a tuple or a dict row factory."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
