"""The Responses / MLflow ResponsesAgent request shape, and conversions to and from messages."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Annotated, Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from lakebase_memory.memory.history import message_text


class ContentPart(BaseModel):
    type: Literal["input_text", "output_text", "text"] = "input_text"
    text: str


MAX_THREAD_ID_CHARS = 512  # ids are primary-key parts: keep them well inside index limits


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL characters; refuse them here with a 422.
    if "\x00" in value:
        raise ValueError("text may not contain NUL (\\u0000) characters")
    return value


class MessageItem(BaseModel):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None

    @field_validator("content")
    @classmethod
    def _content_without_nul(cls, value: str | list[ContentPart]) -> str | list[ContentPart]:
        for text in [value] if isinstance(value, str) else [p.text for p in value]:
            _no_nul(text)
        return value

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionCallItem(BaseModel):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str = "{}"
    id: str | None = None

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            parsed = json.loads(value or "{}")
        except json.JSONDecodeError as error:
            raise ValueError(f"arguments must be a JSON object string: {error}") from error
        if not isinstance(parsed, dict):
            raise ValueError("arguments must be a JSON object string")
        return value or "{}"


class FunctionCallOutputItem(BaseModel):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str


def _item_kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type") or "message")
    return str(getattr(value, "type", "message"))


INPUT_ITEM_TAGS = frozenset({"message", "function_call", "function_call_output"})
InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_item_kind),
]


class FunctionTool(BaseModel):
    """A tool the client runs itself (Responses `tools` entry of type `function`): the model
    may call it; the turn then ends with the call, and the client sends the result."""

    type: Literal["function"] = "function"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(None, max_length=4096)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def for_model(self) -> dict[str, Any]:
        """The OpenAI chat tool definition `bind_tools` takes."""
        parameters = self.parameters or {"type": "object", "properties": {}}
        function: dict[str, Any] = {"name": self.name, "parameters": parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


class RequestContext(BaseModel):
    model_config = ConfigDict(extra="allow")
    conversation_id: str | None = None
    user_id: str | None = None


class ResponsesRequest(BaseModel):
    """Body of POST /invocations and POST /responses."""

    model_config = ConfigDict(extra="allow")

    input: list[InputItem] = Field(
        description="Messages (role/content) or Responses items; a string is one user message."
    )
    custom_inputs: dict[str, Any] | None = None
    context: RequestContext | None = None
    stream: bool = False
    background: bool = Field(
        False,
        description="Run the turn in the server and answer at once with the stored response "
        "(GET /responses/{id} to poll or resume its stream, POST .../cancel to stop it).",
    )
    tools: list[FunctionTool] | None = Field(
        None, max_length=128, description="Functions the client runs (Responses `tools`)."
    )

    @field_validator("input", mode="before")
    @classmethod
    def _string_or_items(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("input is empty: send at least one message")
            return [{"role": "user", "content": value}]
        if not isinstance(value, list):
            raise ValueError("input must be a string or a list of messages")
        if not value:
            raise ValueError("input is empty: send at least one message")
        return value

    def thread_id(self) -> str:
        """custom_inputs.thread_id > context.conversation_id > a new UUIDv7 (as the reference)."""
        candidate = (self.custom_inputs or {}).get("thread_id")
        if candidate is not None and str(candidate).strip():
            return valid_thread_id(str(candidate))
        if self.context and self.context.conversation_id and self.context.conversation_id.strip():
            return valid_thread_id(self.context.conversation_id)
        return str(uuid7())

    def messages(self) -> list[BaseMessage]:
        messages: list[BaseMessage] = []
        for item in self.input:
            if isinstance(item, MessageItem):
                messages.append(_message_from(item))
            elif isinstance(item, FunctionCallItem):
                call = {"id": item.call_id, "name": item.name, "args": json.loads(item.arguments)}
                previous = messages[-1] if messages else None
                if isinstance(previous, AIMessage):
                    previous.tool_calls.append(call)  # one assistant turn, several calls
                else:
                    messages.append(AIMessage(content="", tool_calls=[call]))
            else:
                messages.append(ToolMessage(content=item.output, tool_call_id=item.call_id))
        return messages


class InvalidThreadIdError(ValueError):
    """A thread id the database cannot key on."""


def valid_thread_id(thread_id: str) -> str:
    if len(thread_id) > MAX_THREAD_ID_CHARS:
        raise InvalidThreadIdError(
            f"thread_id is {len(thread_id)} characters long; at most {MAX_THREAD_ID_CHARS} "
            "are allowed."
        )
    if "\x00" in thread_id:
        raise InvalidThreadIdError("thread_id may not contain NUL (\\u0000) characters.")
    return thread_id


def _message_from(item: MessageItem) -> BaseMessage:
    if item.role == "user":
        return HumanMessage(item.text)
    if item.role == "assistant":
        return AIMessage(item.text)
    return SystemMessage(item.text)


def output_items(message: BaseMessage) -> list[dict[str, Any]]:
    """Responses output items for one message produced by the agent."""
    if isinstance(message, ToolMessage):
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id,
                "output": message_text(message),
            }
        ]
    if not isinstance(message, AIMessage):
        return []
    items: list[dict[str, Any]] = []
    text = message_text(message)
    if text or not message.tool_calls:
        items.append(message_item(item_id_for(message), text))
    for call in message.tool_calls:
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{call['id']}",
                "call_id": call["id"],
                "name": call["name"],
                "arguments": json.dumps(call["args"]),
                "status": "completed",
            }
        )
    return items


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    done = status == "completed"
    content = [{"type": "output_text", "text": text, "annotations": []}] if done else []
    return {"type": "message", "id": item_id, "role": "assistant", "status": status,
            "content": content}  # fmt: skip


def item_id_for(message: BaseMessage) -> str:
    return message.id or f"msg_{uuid.uuid4().hex}"


def uuid7() -> uuid.UUID:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, then random bits (time-ordered ids)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)
