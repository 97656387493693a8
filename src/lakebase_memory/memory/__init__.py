"""Conversation memory: the checkpointer, the thread catalogue, history de-duplication."""

from lakebase_memory.memory.chat_messages import (
    ROLES,
    ChatMessages,
    MessageNotFoundError,
    message_uuid,
)
from lakebase_memory.memory.checkpointer import make_checkpointer
from lakebase_memory.memory.history import message_text, new_messages
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver, LinearPostgresSaver
from lakebase_memory.memory.threads import (
    InvalidCursorError,
    ThreadCatalogue,
    ThreadNotFoundError,
    ThreadPage,
    ThreadSummary,
    chat_id_for,
    title_from,
)

__all__ = [
    "ROLES",
    "AsyncLinearPostgresSaver",
    "ChatMessages",
    "InvalidCursorError",
    "LinearPostgresSaver",
    "MessageNotFoundError",
    "ThreadCatalogue",
    "ThreadNotFoundError",
    "ThreadPage",
    "ThreadSummary",
    "chat_id_for",
    "make_checkpointer",
    "message_text",
    "message_uuid",
    "new_messages",
    "title_from",
]
