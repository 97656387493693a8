"""The log's compact message form: exact round trips for LangChain's message classes, the
serializer for anything else, and fewer bytes than the serializer for the same message."""

from __future__ import annotations

import datetime
import enum
from collections import OrderedDict
from copy import deepcopy

import pydantic
import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from lakebase_memory.memory.saver.codec import MessageCopier, copy_message, same_message
from lakebase_memory.memory.saver.message_codec import COMPACT, decode_message, encode_message
from lakebase_memory.memory.saver.ops import BaseLinearSaver

MESSAGES: list[BaseMessage] = [
    HumanMessage("hello", id="h1"),
    HumanMessage(
        [
            {"type": "text", "text": "a picture"},
            {"type": "image_url", "image_url": {"url": "data:,"}},
        ],
        id="h2",
        name="ada",
    ),
    AIMessage(
        "",
        id="a1",
        tool_calls=[
            {"name": "search", "args": {"q": "x", "n": 3}, "id": "c1", "type": "tool_call"}
        ],
        usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
        response_metadata={"model": "m", "finish_reason": "tool_calls"},
    ),
    AIMessage("no id"),
    ToolMessage("42", tool_call_id="c1", id="t1", status="error", artifact={"rows": [1, 2]}),
    SystemMessage("be brief", id="s1", additional_kwargs={"cache": True}),
    ChatMessage("hi", role="critic", id="c9"),
    FunctionMessage("{}", name="f", id="f1"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{type(m).__name__}-{m.id}")
def test_langchain_messages_round_trip_exactly(message: BaseMessage) -> None:
    blob = encode_message(message)
    assert blob is not None
    decoded = decode_message(blob, message.id)
    assert type(decoded) is type(message)
    assert decoded == message
    assert decoded.model_dump() == message.model_dump()
    serialized = JsonPlusSerializer().dumps_typed(message)[1]
    assert len(blob) < len(serialized)


class CustomMessage(HumanMessage):
    mood: str = "calm"


class Mood(enum.StrEnum):
    HAPPY = "happy"


@pytest.mark.parametrize(
    "message",
    [
        CustomMessage("subclass", id="x1"),
        HumanMessage("extra field", id="x2", mood="odd"),
        HumanMessage("a date", id="x3", additional_kwargs={"at": datetime.date(2026, 1, 2)}),
        # Equal to what msgpack reads back ("happy"), but not the same type.
        AIMessage("an enum", id="x4", additional_kwargs={"mood": Mood.HAPPY}),
        AIMessage("an enum key", id="x5", response_metadata={Mood.HAPPY: 1}),
    ],
    ids=["subclass", "extra-field", "not-msgpack", "str-enum", "str-enum-key"],
)
def test_anything_else_is_left_to_the_serializer(message: BaseMessage) -> None:
    # A date would come back as a string: the saver compares the decoding and falls back.
    saver = BaseLinearSaver()
    type_, blob, snapshot = saver._dump_entry(message)
    assert type_ == "msgpack" and snapshot == message
    for name in ("additional_kwargs", "response_metadata"):
        kept, given = getattr(snapshot, name), getattr(message, name)
        assert [(type(k), type(v)) for k, v in kept.items()] == [
            (type(k), type(v)) for k, v in given.items()
        ]
    entry = {"type": type_, "blob": blob, "message_id": message.id}
    assert saver._load_entry(entry) == message


def test_the_saver_stores_langchain_messages_compactly() -> None:
    saver = BaseLinearSaver()
    for message in MESSAGES:
        type_, blob, snapshot = saver._dump_entry(message)
        assert type_ == COMPACT and snapshot == message
        assert saver._load_entry({"type": type_, "blob": blob, "message_id": message.id}) == message


class Parsed(pydantic.BaseModel):  # what structured output leaves under "parsed"
    answer: int


COPIED = [
    *MESSAGES,
    HumanMessage("extra field", id="x2", mood="odd"),
    AIMessage(
        "not JSON",
        id="x6",
        additional_kwargs={"parsed": Parsed(answer=1), "ordered": OrderedDict(a=[1])},
    ),
]


@pytest.mark.parametrize("how", ["copy_message", "MessageCopier"])
@pytest.mark.parametrize("message", COPIED, ids=lambda m: f"{type(m).__name__}-{m.id}")
def test_copies_are_equal_and_independent(message: BaseMessage, how: str) -> None:
    original = deepcopy(message)  # compared with after the edits
    make = MessageCopier(message) if how == "MessageCopier" else lambda: copy_message(message)
    copy, other = make(), make()
    assert copy == message and copy is not message and same_message(copy, message)
    assert copy.model_fields_set == message.model_fields_set
    # Edits of every kind on one copy: fields, nested dicts and lists, a new attribute.
    copy.content = "changed"
    copy.additional_kwargs["note"] = "added"
    copy.response_metadata["more"] = [1]
    if isinstance(copy, AIMessage) and copy.tool_calls:
        copy.tool_calls[0]["args"]["q"] = "edited"
    if "parsed" in copy.additional_kwargs:
        copy.additional_kwargs["parsed"].answer = 2
        copy.additional_kwargs["ordered"]["a"].append(2)
    copy.surprise = "extra"
    assert not same_message(copy, message)
    for untouched in (message, other):
        assert same_message(untouched, original)
        assert untouched.model_fields_set == original.model_fields_set
    assert not same_message(HumanMessage("x", id="1"), AIMessage("x", id="1"))
