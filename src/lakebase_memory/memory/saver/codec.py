"""How values become rows: message-log references, channel versions, what counts as messages.

A channel whose value is a list of messages is stored as a *reference*: the list of the log
sequence numbers of its messages, run-length encoded. A conversation that only grows is one
run, `[[0, 600]]`, however long it is; a removal or an edit splits it into a few runs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, RemoveMessage

# Type tags of rows that hold log references instead of serialized values. They never clash
# with a serializer's tags ("msgpack", "json", "bytes", "null", "empty", ...).
MESSAGES_REF = "lakebase.messages"  # a list of messages
MESSAGE_REF = "lakebase.message"  # one message (a pending write of a single message)
REF_TYPES = (MESSAGES_REF, MESSAGE_REF)

MessageKey = tuple[str, str]


def encode_ref(seqs: Sequence[int]) -> bytes:
    """Run-length encode sequence numbers: [3, 4, 5, 9] -> b"[[3,3],[9,1]]" (start, length)."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and runs[-1][0] + runs[-1][1] == seq:
            runs[-1][1] += 1
        else:
            runs.append([seq, 1])
    return json.dumps(runs, separators=(",", ":")).encode()


def decode_ref(blob: bytes) -> list[int]:
    """The sequence numbers `encode_ref` encoded, in order."""
    return [seq for start, length in json.loads(blob) for seq in range(start, start + length)]


def message_key(message: BaseMessage) -> MessageKey | None:
    """What finds a message again in the log: its type and id (None without an id)."""
    return (message.type, message.id) if message.id else None


def is_message_list(value: Any) -> bool:
    """A channel value stored through the log: a non-empty list of messages."""
    return (
        isinstance(value, list) and bool(value) and all(isinstance(m, BaseMessage) for m in value)
    )


def loggable_write(value: Any) -> list[BaseMessage] | None:
    """The messages of a pending write worth keeping in the log, or None to store a blob.

    Only messages that already have ids: `add_messages` gives the others ids after the write
    is saved, so their log entry could never be matched again. `RemoveMessage`s are markers,
    not content, and share the id of the message they remove.
    """
    messages = [value] if isinstance(value, BaseMessage) else value
    if not isinstance(messages, list) or not messages:
        return None
    for m in messages:
        if not isinstance(m, BaseMessage) or isinstance(m, RemoveMessage) or not m.id:
            return None
    return messages


def is_inline(value: Any) -> bool:
    """Values kept in the checkpoint's own JSON, as the stock saver keeps them."""
    return value is None or isinstance(value, str | int | float | bool)


def next_version(current: str | int | float | None) -> str:
    """The stock Postgres saver's version format, so both savers read each other's rows."""
    if current is None:
        number = 0
    elif isinstance(current, int | float):
        number = int(current)
    else:
        number = int(current.split(".")[0])
    return f"{number + 1:032}.{random.random():016}"
