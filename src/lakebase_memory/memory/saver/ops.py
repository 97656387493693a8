"""Everything the linear savers do, written once, without I/O: `BaseLinearSaver`, made of
the read path (`read_path.py`), the write path (`write_path.py`) and leases and maintenance
(`maintenance.py`), on the operations protocol of `protocol.py`. `sync.py` and `aio.py` drive
it on a connection.

Storage (see `lakebase_memory.memory.saver` for the overview): checkpoints, blobs and writes
are the stock tables and formats, except that a list of messages is stored in the thread's
append-only log (`ai_chatbot.checkpoint_messages`) and the blob or write holds only the
sequence numbers of its messages.
"""

from __future__ import annotations

from langgraph.checkpoint.serde.base import SerializerProtocol

from lakebase_memory.memory.saver.cache import DEFAULT_MAX_THREADS, MessageCache
from lakebase_memory.memory.saver.codec import next_version
from lakebase_memory.memory.saver.maintenance import Maintenance
from lakebase_memory.memory.saver.protocol import (
    BEGIN,
    DEFAULT_LEASE_SECONDS,
    TURN_KEY,
    AfterCommit,
    MessageLogError,
    Op,
    StaleTurnError,
    ThreadBusyError,
    check_prune_arguments,
    checkpoint_key,
    new_turn_id,
    read_only,
    thread_id_of,
    with_turn,
)
from lakebase_memory.memory.saver.read_path import ReadPath
from lakebase_memory.memory.saver.write_path import WritePath

__all__ = [
    "BEGIN",
    "DEFAULT_LEASE_SECONDS",
    "TURN_KEY",
    "AfterCommit",
    "BaseLinearSaver",
    "MessageLogError",
    "Op",
    "StaleTurnError",
    "ThreadBusyError",
    "check_prune_arguments",
    "checkpoint_key",
    "new_turn_id",
    "read_only",
    "thread_id_of",
    "with_turn",
]


class BaseLinearSaver(ReadPath, WritePath, Maintenance):
    """The logic shared by `LinearPostgresSaver` and `AsyncLinearPostgresSaver`.

    Each `_op_*` method returns an operation for a driver; `after` collects what to do to the
    cache once the operation's transaction has committed.

    Every operation but a copy may run twice (the drivers run it again when the server drops
    the connection, possibly after it committed): a repeated write finds its log entries by
    message id and its checkpoint by id, deletes find nothing more to delete, and a turn
    lease is taken under an id made outside the operation. Only a thread's `size_bytes` may
    then count one write twice, and a message without an id be logged twice (the second
    entry unreferenced), until the next prune.
    """

    def __init__(
        self, *, serde: SerializerProtocol | None = None, cache_threads: int = DEFAULT_MAX_THREADS
    ) -> None:
        super().__init__(serde=serde)
        self.cache = MessageCache(cache_threads)

    def get_next_version(self, current: str | None, channel: None) -> str:  # type: ignore[override]
        return next_version(current)
