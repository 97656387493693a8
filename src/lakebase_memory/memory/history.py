"""What part of a request's messages is new to a thread.

Clients differ: some send only the new message, some re-send the whole history, some a window
of it. The new part is what follows the longest overlap between the end of the stored
conversation and the start of the incoming messages, so each case appends only the new
trailing messages and a thread never holds the same turn twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage


def new_messages(
    stored: Sequence[BaseMessage], incoming: Sequence[BaseMessage]
) -> list[BaseMessage]:
    """The trailing part of `incoming` that `stored` does not already end with."""
    stored_keys = [message_key(m) for m in stored]
    incoming_keys = [message_key(m) for m in incoming]
    for overlap in range(min(len(stored_keys), len(incoming_keys)), 0, -1):
        if stored_keys[len(stored_keys) - overlap :] == incoming_keys[:overlap]:
            return list(incoming[overlap:])
    return list(incoming)


def message_key(message: BaseMessage) -> tuple[Any, ...]:
    """What makes two messages the same turn: who said it, what it says, what it calls."""
    key: tuple[Any, ...] = (message.type, message_text(message))
    if isinstance(message, AIMessage) and message.tool_calls:
        key += (tuple((c["name"], repr(sorted(c["args"].items()))) for c in message.tool_calls),)
    if isinstance(message, ToolMessage):
        key += (message.tool_call_id,)
    return key


def message_text(message: BaseMessage) -> str:
    """The plain text of a message, whatever shape its content has."""
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
    return "".join(parts)
