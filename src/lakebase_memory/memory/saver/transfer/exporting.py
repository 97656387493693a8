"""`export_stock_threads`: threads written back in the stock format, in place or into
another database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from lakebase_memory.database import describe_conninfo
from lakebase_memory.memory.saver.aio import AsyncLinearPostgresSaver
from lakebase_memory.memory.saver.transfer.batches import (
    connection_of,
    move_each,
)
from lakebase_memory.memory.saver.transfer.replay import (
    read_thread,
    replay_thread,
    thread_snapshot,
)
from lakebase_memory.memory.saver.transfer.report import (
    DEFAULT_BATCH_SIZE,
    MovedThread,
    MoveThread,
    OnThread,
    SkipThread,
    Source,
    TargetUnavailableError,
    TransferReport,
)
from lakebase_memory.memory.saver.transfer.thread_state import (
    has_references,
    has_stock_tables,
    lock_head,
    thread_bytes,
    thread_exists,
)


async def export_stock_threads(
    source: Source,
    thread_ids: Sequence[str] | None = None,
    *,
    target: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    serde: SerializerProtocol | None = None,
    on_thread: OnThread | None = None,
) -> TransferReport:
    """Write threads in LangGraph's stock Postgres format, so its own saver reads them.

    Args:
        source: the memory database (an autocommit connection, or a pool of them).
        thread_ids: the threads to export; None for every thread with checkpoints.
        target: None to convert the threads in place (their message-log references become
            full stock blobs; the thread's log entries and head row are removed), or the
            conninfo of another database (or schema, with `options=-csearch_path=...`) where
            LangGraph's `AsyncPostgresSaver` creates its tables and receives the threads. The
            source is not changed then.
        dry_run: export each thread and roll it back (in place, or in a target that already
            has the stock tables; otherwise nothing is written at all).
        serde: the serializer both sides use (the default `JsonPlusSerializer` otherwise).
        on_thread: called with each thread's result as soon as it is known (progress).

    In place, a thread already in the stock format is skipped; into a target, a thread the
    target already has is skipped (delete it there to export it again).

    Raises:
        UnknownThreadError: a named thread has no checkpoints (nothing was changed).
        TargetUnavailableError: the target database cannot be reached.
    """
    where = "in place" if target is None else describe_conninfo(target)
    report = TransferReport("export", where, dry_run)
    async with connection_of(source) as conn:
        if target is None:
            move = _exporter_in_place(conn, serde, dry_run)
            await move_each(conn, thread_ids, batch_size, report, on_thread, "exported", move)
            return report
        try:
            out = await AsyncConnection.connect(
                target, autocommit=True, prepare_threshold=0, row_factory=dict_row
            )
        except psycopg.OperationalError as error:
            cause = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise TargetUnavailableError(
                f"cannot connect to the export target {where}: {cause}. Check the URL and "
                "that its server is running."
            ) from error
        async with out:
            ready = await has_stock_tables(out)
            if not dry_run:
                await AsyncPostgresSaver(out, serde=serde).setup()  # type: ignore[arg-type]
                ready = True
            move = _exporter_to(conn, out, ready, serde, dry_run)
            await move_each(conn, thread_ids, batch_size, report, on_thread, "exported", move)
    return report


# -- export ----------------------------------------------------------------------------------


def _exporter_in_place(
    conn: AsyncConnection[Any], serde: SerializerProtocol | None, dry_run: bool
) -> MoveThread:
    """Exports a thread into the stock format in its own database."""

    async def move(thread_id: str) -> MovedThread:
        linear = AsyncLinearPostgresSaver(conn, serde=serde)
        stock = AsyncPostgresSaver(conn, serde=serde)  # type: ignore[arg-type]
        async with conn.transaction(force_rollback=dry_run):
            head = await lock_head(conn, thread_id)
            if head is None and not await has_references(conn, thread_id):
                raise SkipThread("already in the stock format")
            before = await thread_bytes(conn, thread_id, log=True, head=head is not None)
            checkpoints = await read_thread(conn, linear, thread_id)
            await linear.adelete_thread(thread_id)  # rows, log entries and head row
            await replay_thread(stock, thread_id, checkpoints)
            after = await thread_bytes(conn, thread_id, log=True)
        return checkpoints, before, after

    return move


def _exporter_to(
    conn: AsyncConnection[Any],
    out: AsyncConnection[Any],
    ready: bool,
    serde: SerializerProtocol | None,
    dry_run: bool,
) -> MoveThread:
    """Exports a thread into the stock tables of `out` (`ready`: they exist), leaving the
    source as it is."""

    async def move(thread_id: str) -> MovedThread:
        linear = AsyncLinearPostgresSaver(conn, serde=serde)
        stock = AsyncPostgresSaver(out, serde=serde)  # type: ignore[arg-type]
        if not ready:  # a dry run into a database without the stock tables: read only
            before, checkpoints = await thread_snapshot(conn, linear, thread_id)
            return checkpoints, before, None
        async with out.transaction(force_rollback=dry_run):
            if await thread_exists(out, thread_id):
                raise SkipThread(
                    "the target database already has this thread: delete it there "
                    "to export it again"
                )
            before, checkpoints = await thread_snapshot(conn, linear, thread_id)
            await replay_thread(stock, thread_id, checkpoints)
            after = await thread_bytes(out, thread_id, log=False)
        return checkpoints, before, after

    return move
