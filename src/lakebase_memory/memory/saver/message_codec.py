"""How a log entry stores one message: compactly for LangChain's own message classes.

LangGraph's serializer writes a message with its module and class names, every field
(defaults included) and its id: about 180 bytes around a message's text. The log keeps its
entries smaller: `[class name, fields that differ from their defaults]` in msgpack, the id
being in the entry's `message_id` column already. Anything else (another class, extra
fields, a value msgpack cannot hold exactly) goes through the saver's serializer, as before;
every entry is decoded again before it is trusted (see `ops._plan_log`).
"""

from __future__ import annotations

from typing import Any

import ormsgpack
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

COMPACT = "lakebase.message.v1"  # the entry's `type` column
_CLASSES: dict[str, type[BaseMessage]] = {
    cls.__name__: cls
    for cls in (AIMessage, HumanMessage, SystemMessage, ToolMessage, ChatMessage, FunctionMessage)
}
_DEFAULTS: dict[type[BaseMessage], dict[str, Any]] = {
    cls: {
        name: field.get_default(call_default_factory=True)
        for name, field in cls.model_fields.items()
        if not field.is_required()
    }
    for cls in _CLASSES.values()
}


def encode_message(message: BaseMessage) -> bytes | None:
    """The compact form of `message`, or None when only the serializer can store it."""
    cls = type(message)
    defaults = _DEFAULTS.get(cls)
    if defaults is None or message.__pydantic_extra__:
        return None
    fields = {
        name: value
        for name, value in message.__dict__.items()
        if name != "id" and not (name in defaults and _same(value, defaults[name]))
    }
    try:
        return ormsgpack.packb([cls.__name__, fields])
    except (TypeError, ormsgpack.MsgpackEncodeError):
        return None


def decode_message(blob: bytes, message_id: str | None) -> BaseMessage:
    name, stored = ormsgpack.unpackb(blob)
    cls = _CLASSES[name]
    # Every field given: pydantic then never inspects default factories (slow), and the
    # message was validated when it was written and compared with this very decoding then.
    fields = {k: v.copy() if isinstance(v, dict | list) else v for k, v in _DEFAULTS[cls].items()}
    fields.update(stored, id=message_id)
    # Every field set, as after LangGraph's serializer (which validates a full dump).
    return cls.model_construct(_fields_set=set(fields), **fields)


def _same(value: Any, default: Any) -> bool:
    return type(value) is type(default) and value == default
