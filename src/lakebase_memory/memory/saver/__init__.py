"""LangGraph checkpointers whose storage grows linearly with a conversation (issue 6).

LangGraph's stock Postgres saver writes a channel's whole value at every checkpoint that
changes it, so a thread's `messages` list is rewritten at every step: storage grows with the
square of the conversation. These savers keep the stock tables and formats for everything but
lists of messages, which go to an append-only per-thread log:

- `ai_chatbot.checkpoint_messages (thread_id, seq, message_id, type, blob)`: each message
  once, numbered 0, 1, 2... within its thread, in a compact form for LangChain's message
  classes (`message_codec.py`), else with the saver's serializer;
- `ai_chatbot.checkpoint_threads`: one row per thread: its owner, size, message count and
  last activity (for thread lists), its next sequence number, a generation that changes when
  log entries are deleted, and the turn lease that fences concurrent turns;
- a checkpoint's JSON holds the list as a reference, its run-length encoded sequence
  numbers: `{"lakebase.messages": [[0, 600]]}` for 600 messages in order (threads saved by
  earlier versions have it in a `checkpoint_blobs` row of type `lakebase.messages`).

Saving a checkpoint appends only the messages its list does not already reference, in one
statement. Any list works, not only appends: a removal (`RemoveMessage`) or an edit (same id,
new content) is a new reference, plus a new entry for an edited message. Pending writes are
stored as the stock saver stores them. History, time travel, forks and pending writes behave
as with the stock saver.

Messages are values: change one by writing a message with the same id, not by mutating a
returned message in place (its nested dicts and lists are shared with the saver's cache).
"""

from lakebase_memory.memory.saver.aio import AsyncLinearPostgresSaver
from lakebase_memory.memory.saver.ops import (
    TURN_KEY,
    MessageLogError,
    StaleTurnError,
    ThreadBusyError,
)
from lakebase_memory.memory.saver.sync import LinearPostgresSaver

__all__ = [
    "TURN_KEY",
    "AsyncLinearPostgresSaver",
    "LinearPostgresSaver",
    "MessageLogError",
    "StaleTurnError",
    "ThreadBusyError",
]
