"""How values become rows: message-log references, channel versions, what counts as messages.

A channel whose value is a list of messages is stored as a *reference*: the list of the log
sequence numbers of its messages, run-length encoded. A conversation that only grows is one
run, `[[0, 600]]`, however long it is; a removal or an edit splits it into a few runs.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage

# Type tags of rows that hold log references instead of serialized values. They never clash
# with a serializer's tags ("msgpack", "json", "bytes", "null", "empty", ...).
MESSAGES_REF = "lakebase.messages"  # a list of messages
MESSAGE_REF = "lakebase.message"  # one message (a pending write of a single message)
REF_TYPES = (MESSAGES_REF, MESSAGE_REF)

# A message list inside a checkpoint's own JSON (`channel_values`): {INLINE_REF: runs}.
# Kept there rather than in a blob row, a reference costs a few bytes of the checkpoint row.
INLINE_REF = "lakebase.messages"

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
    return runs_to_seqs(json.loads(blob))


def runs_to_seqs(runs: list[list[int]]) -> list[int]:
    return [seq for start, length in runs for seq in range(start, start + length)]


def inline_ref(seqs: Sequence[int]) -> dict[str, Any]:
    """The value a message list takes in a checkpoint's JSON."""
    return {INLINE_REF: json.loads(encode_ref(seqs))}


def inline_ref_seqs(value: Any) -> list[int] | None:
    """The sequence numbers of an inline reference; None for any other value."""
    if isinstance(value, dict) and len(value) == 1 and INLINE_REF in value:
        return runs_to_seqs(value[INLINE_REF])
    return None


def message_key(message: BaseMessage) -> MessageKey | None:
    """What finds a message again in the log: its type and id (None without an id)."""
    return (message.type, message.id) if message.id else None


def copy_message(message: BaseMessage) -> BaseMessage:
    """A copy as independent as a freshly decoded message (nested dicts and lists too, so a
    caller editing `additional_kwargs` or content blocks never edits the cache), at a
    fraction of `copy.deepcopy`'s cost."""
    return MessageCopier(message)()


class MessageCopier:
    """Copies of one message that never changes (a cached snapshot): which fields need
    copying is worked out once, not at every copy. A read hands out a copy of every message
    of the state, so this is per message and per read."""

    __slots__ = ("_cls", "_containers", "_message")

    def __init__(self, message: BaseMessage) -> None:
        self._message = message
        self._cls = type(message)
        self._containers = tuple(
            name for name, value in message.__dict__.items() if type(value) not in _IMMUTABLE
        )

    def __call__(self) -> BaseMessage:
        message = self._message
        copy = self._cls.__new__(self._cls)
        fields = message.__dict__.copy()  # replacing values only: the dict keeps its size
        for name in self._containers:
            value = fields[name]
            kind = type(value)
            fields[name] = kind() if not value and kind in (dict, list) else _copy_json(value)
        extra, private = message.__pydantic_extra__, message.__pydantic_private__
        object.__setattr__(copy, "__dict__", fields)
        object.__setattr__(copy, "__pydantic_fields_set__", message.__pydantic_fields_set__.copy())
        # A fresh extra dict per copy: assigning an unknown attribute writes into it.
        object.__setattr__(copy, "__pydantic_extra__", None if extra is None else _copy_json(extra))
        object.__setattr__(copy, "__pydantic_private__", None if private is None else dict(private))
        return copy


# Values a copy may share with the original: nobody can change them in place.
_IMMUTABLE = (str, int, float, bool, bytes, type(None))


def _copy_json(value: Any) -> Any:
    """Dicts and lists copied all the way down, immutable values shared, and anything else
    (an OrderedDict, a set, a pydantic object under `additional_kwargs["parsed"]`...) deep
    copied: it might be changed in place too."""
    kind = type(value)
    if kind is dict:
        return {k: _copy_json(v) for k, v in value.items()}
    if kind is list:
        return [_copy_json(v) for v in value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value)


def same_message(a: BaseMessage, b: BaseMessage) -> bool:
    """Pydantic equality (same class and field values), without its per-call overhead."""
    return a is b or (
        type(a) is type(b)
        and a.__dict__ == b.__dict__
        and a.__pydantic_extra__ == b.__pydantic_extra__
        and a.__pydantic_private__ == b.__pydantic_private__
    )


def identical_message(a: BaseMessage, b: BaseMessage) -> bool:
    """Equal, and every value of the same type all the way down: a stored form that reads
    back a str-Enum as a str, or `True` as `1`, is not exact even though `==` says equal.
    For the round-trip check of a new log entry (once per message, never per read)."""
    return same_message(a, b) and _same_types(
        (a.__dict__, a.__pydantic_extra__), (b.__dict__, b.__pydantic_extra__)
    )


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is dict:  # equal dicts: same keys; same order too, after a round trip
        return all(
            type(ka) is type(kb) and _same_types(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if type(a) is list or type(a) is tuple:
        return all(map(_same_types, a, b))
    return True


def is_message_list(value: Any) -> bool:
    """A channel value stored through the log: a non-empty list of messages."""
    return (
        isinstance(value, list) and bool(value) and all(isinstance(m, BaseMessage) for m in value)
    )


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
