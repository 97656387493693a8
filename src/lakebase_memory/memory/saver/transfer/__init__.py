"""Moving threads between LangGraph's stock Postgres format and the linear format (issue 6).

The linear savers read threads that LangGraph's stock `PostgresSaver` wrote, so nothing has to
move for a thread to stay usable. Two one-off operations change where a thread's bytes are:

- `import_stock_threads` rewrites stock threads into the linear format, in place: each message
  once in the thread's log instead of a copy of the whole list at every checkpoint, so old
  threads shrink and later turns stay cheap;
- `export_stock_threads` writes threads back in the stock format, in place or into another
  database, so LangGraph's own saver (or any tool that reads its tables) reads them: nobody is
  locked into this project's storage.

Both replay each thread through a saver's public API (`aput` oldest checkpoint first, then
`aput_writes`), so the target format is exactly what that saver writes, with every checkpoint
id, parent, namespace, metadata, channel version and pending write (task id, task path,
position, channel and value) preserved. Each thread moves in one transaction: a reader sees
it entirely before or entirely after, and a failure leaves it as it was. Writers of the linear
format queue on the thread's head row (`ai_chatbot.checkpoint_threads`), which a move locks
first; a thread in the middle of a turn (a live turn lease) is skipped, not waited for.

Both need the connection's `search_path` to reach the checkpoint tables (as for the savers)
and the message log tables to exist (`saver.setup()` or `lakebase-memory setup`).
"""

from lakebase_memory.memory.saver.transfer.exporting import export_stock_threads
from lakebase_memory.memory.saver.transfer.importing import import_stock_threads
from lakebase_memory.memory.saver.transfer.report import (
    DEFAULT_BATCH_SIZE,
    TargetUnavailableError,
    ThreadResult,
    TransferError,
    TransferReport,
    UnknownThreadError,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "TargetUnavailableError",
    "ThreadResult",
    "TransferError",
    "TransferReport",
    "UnknownThreadError",
    "export_stock_threads",
    "import_stock_threads",
]
