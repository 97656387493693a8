"""`import_stock_threads`: stock-format threads rewritten into the linear format, in place."""

from __future__ import annotations

from collections.abc import Sequence

from langgraph.checkpoint.serde.base import SerializerProtocol

from lakebase_memory.memory.saver.aio import AsyncLinearPostgresSaver
from lakebase_memory.memory.saver.transfer.batches import (
    connection_of,
    move_each,
)
from lakebase_memory.memory.saver.transfer.replay import (
    read_thread,
    replay_thread,
)
from lakebase_memory.memory.saver.transfer.report import (
    DEFAULT_BATCH_SIZE,
    MovedThread,
    OnThread,
    SkipThread,
    Source,
    TransferReport,
)
from lakebase_memory.memory.saver.transfer.thread_state import (
    has_references,
    has_stock_messages,
    lock_head,
    restore_head,
    thread_bytes,
)


async def import_stock_threads(
    conn_or_pool: Source,
    thread_ids: Sequence[str] | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    serde: SerializerProtocol | None = None,
    on_thread: OnThread | None = None,
) -> TransferReport:
    """Rewrite threads stored in the stock format into the linear format, in place.

    Args:
        conn_or_pool: the memory database (an autocommit connection, or a pool of them).
        thread_ids: the threads to import; None for every thread (listed `batch_size` at a
            time, so a database of millions of threads never sits in memory).
        dry_run: import each thread and roll it back, to see what would change.
        serde: the serializer the savers use (the default `JsonPlusSerializer` otherwise).
        on_thread: called with each thread's result as soon as it is known (progress).

    A thread none of whose channel values is a message list in the stock format (already
    imported, written by the linear saver, or without messages) is skipped, so running this
    twice is harmless. A thread written partly by each saver is imported whole. Rows no
    checkpoint refers to (blobs of no checkpoint's channel versions, writes of a checkpoint
    that does not exist) cannot be read through a saver and are not carried over.

    Raises:
        UnknownThreadError: a named thread has no checkpoints (nothing was changed).
    """
    report = TransferReport("import", "in place", dry_run)
    async with connection_of(conn_or_pool) as conn:

        async def move(thread_id: str) -> MovedThread:
            saver = AsyncLinearPostgresSaver(conn, serde=serde)
            async with conn.transaction(force_rollback=dry_run):
                head = await lock_head(conn, thread_id)
                if not await has_stock_messages(conn, saver, thread_id):
                    linear = head is not None or await has_references(conn, thread_id)
                    raise SkipThread(
                        "already in the linear format"
                        if linear
                        else "no message lists in it: nothing to gain"
                    )
                # Without the head row this transaction added as a lock.
                before = await thread_bytes(conn, thread_id, log=True, head=head is not None)
                checkpoints = await read_thread(conn, saver, thread_id)
                await saver.adelete_thread(thread_id)
                await replay_thread(saver, thread_id, checkpoints)
                await restore_head(conn, thread_id, head, checkpoints)
                after = await thread_bytes(conn, thread_id, log=True)
            return checkpoints, before, after

        await move_each(conn, thread_ids, batch_size, report, on_thread, "imported", move)
    return report
