"""Builds the OpenAI Responses event sequence for one turn, streamed or collected.

created > in_progress > per message: output_item.added > content_part.added >
output_text.delta... > output_text.done > content_part.done > output_item.done >
completed (with custom_outputs.thread_id). Every event carries a sequence_number.

A tool call the model makes is a `function_call` item: output_item.added >
function_call_arguments.delta... > function_call_arguments.done > output_item.done; the tool's
result, a `function_call_output` item (output_item.added > output_item.done).

`custom_outputs.context`, when the model's window is managed (MODEL_CONTEXT_POLICY is not
`off`), says what the answer was made from: `tokens_sent`, `messages_sent`,
`messages_left_out` and whether a summary of those was sent (`summarized`).

A finished assistant message item carries one field beyond the Responses shape, `message_id`:
its id in the thread API (`GET /api/threads/{id}` messages' `id`, the `{message_id}` of the
vote endpoint), so a client can vote on an answer without reading the thread back.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage

from lakebase_memory.memory import message_uuid
from lakebase_memory.memory.history import message_text
from lakebase_memory.server.protocol import item_id_for, message_item, output_items

Event = dict[str, Any]


@dataclass
class StreamedCall:
    """A function_call item whose arguments are being streamed."""

    item: dict[str, Any]
    output_index: int
    arguments: list[str] = field(default_factory=list)


class ResponseEvents:
    def __init__(self, thread_id: str, response_id: str | None = None) -> None:
        self.thread_id = thread_id
        self.response_id = response_id or f"resp_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []
        self._sequence = 0
        self._open_item: str | None = None  # id of the message being streamed
        self._open_text: list[str] = []
        self._context: dict[str, Any] | None = None  # what the answer was made from
        self._calls: dict[int, StreamedCall] = {}  # by the chunks' tool call index

    # --- the response envelope ------------------------------------------------------------

    def response(self, status: str) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "output": list(self.output),
            "custom_outputs": self.custom_outputs(),
        }

    def custom_outputs(self) -> dict[str, Any]:
        outputs: dict[str, Any] = {"thread_id": self.thread_id}
        if self._context is not None:
            outputs["context"] = self._context
        return outputs

    def started(self) -> list[Event]:
        return [
            self._event("response.created", response=self.response("in_progress")),
            self._event("response.in_progress", response=self.response("in_progress")),
        ]

    def completed(self) -> list[Event]:
        return [
            self._event(
                "response.completed",
                response=self.response("completed"),
                custom_outputs=self.custom_outputs(),
            )
        ]

    # --- messages -------------------------------------------------------------------------

    def text_delta(self, message_id: str | None, delta: str) -> list[Event]:
        events: list[Event] = []
        if self._open_item is None:
            events += self._open(message_id or f"msg_{uuid.uuid4().hex}")
        self._open_text.append(delta)
        events.append(self._event("response.output_text.delta", **self._where(), delta=delta))
        return events

    def tool_call_delta(self, chunk: AIMessageChunk) -> list[Event]:
        """Events for the tool call pieces of a streamed chunk: a call's first piece opens
        its item, every piece streams its arguments."""
        events: list[Event] = []
        for piece in chunk.tool_call_chunks:
            index = piece.get("index") or 0
            if index not in self._calls:
                call_id = piece.get("id") or f"call_{uuid.uuid4().hex[:24]}"
                events += self._open_call(index, call_id, piece.get("name") or "")
            if piece.get("args"):
                events += self._call_delta(self._calls[index], piece["args"] or "")
        return events

    def final_message(self, message: BaseMessage) -> list[Event]:
        """A message the agent finished: close its streamed item, or emit it whole."""
        events: list[Event] = []
        if isinstance(message, AIMessage) and "context" in message.response_metadata:
            self._context = message.response_metadata["context"]
        items = output_items(message)
        for item in items:
            if item["type"] == "message":
                if self._open_item is None:
                    events += self._open(item_id_for(message) if isinstance(message, AIMessage)
                                         else item["id"])  # fmt: skip
                    text = message_text(message)
                    if text:
                        events.append(
                            self._event("response.output_text.delta", **self._where(), delta=text)
                        )
                events += self._close(message_text(message), chat_message_id(message))
            elif item["type"] == "function_call":
                if not self._calls:  # not streamed (a model that answers whole): now
                    events += self._open_call(-1, item["call_id"], item["name"])
                    events += self._call_delta(self._calls[-1], item["arguments"])
                events += self._close_call(item)
            else:
                index = len(self.output)
                self.output.append(item)
                events.append(self._event("response.output_item.added", output_index=index,
                                          item={**item, "status": "in_progress"}))  # fmt: skip
                events.append(self._event("response.output_item.done", output_index=index,
                                          item=item))  # fmt: skip
        return events

    def _open_call(self, index: int, call_id: str, name: str) -> list[Event]:
        item = {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id,
                "name": name, "arguments": "", "status": "in_progress"}  # fmt: skip
        opened = (self._open_item is not None) + len(self._calls)
        call = self._calls[index] = StreamedCall(item, len(self.output) + opened)
        return [self._event("response.output_item.added", output_index=call.output_index,
                            item=dict(item))]  # fmt: skip

    def _call_delta(self, call: StreamedCall, delta: str) -> list[Event]:
        call.arguments.append(delta)
        return [self._event("response.function_call_arguments.delta", item_id=call.item["id"],
                            output_index=call.output_index, delta=delta)]  # fmt: skip

    def _close_call(self, item: dict[str, Any]) -> list[Event]:
        """Finish the streamed item of this call (the first one open, if its id is unknown)."""
        index = next((i for i, c in self._calls.items() if c.item["call_id"] == item["call_id"]),
                     next(iter(self._calls)))  # fmt: skip
        call = self._calls.pop(index)
        done = {**item, "id": call.item["id"]}
        self.output.append(done)
        where = {"item_id": done["id"], "output_index": call.output_index}
        return [
            self._event("response.function_call_arguments.done", **where,
                        arguments=done["arguments"]),
            self._event("response.output_item.done", output_index=call.output_index, item=done),
        ]  # fmt: skip

    def _open(self, item_id: str) -> list[Event]:
        self._open_item = item_id
        self._open_text = []
        index = len(self.output)
        return [
            self._event("response.output_item.added", output_index=index,
                        item=message_item(item_id, "", status="in_progress")),
            self._event("response.content_part.added", **self._where(),
                        part={"type": "output_text", "text": "", "annotations": []}),
        ]  # fmt: skip

    def _close(self, final_text: str, message_id: str | None) -> list[Event]:
        assert self._open_item is not None
        text = final_text or "".join(self._open_text)
        where = self._where()
        item = message_item(self._open_item, text)
        if message_id is not None:
            item["message_id"] = message_id
        part = item["content"][0]
        self.output.append(item)
        self._open_item = None
        return [
            self._event("response.output_text.done", **where, text=text),
            self._event("response.content_part.done", **where, part=part),
            self._event("response.output_item.done", output_index=where["output_index"],
                        item=item),
        ]  # fmt: skip

    def _where(self) -> dict[str, Any]:
        return {"item_id": self._open_item, "output_index": len(self.output), "content_index": 0}

    def _event(self, kind: str, **fields: Any) -> Event:
        return {"type": kind, "sequence_number": self._next(), **fields}

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence - 1


def error_frame(message: str, code: str, thread_id: str | None = None) -> Event:
    """The event that ends a stream with an error, direct or background. The reference's
    mid-stream error frame is {"error": "..."}; type, code and the thread are extra."""
    frame: Event = {"type": "error", "error": message, "code": code}
    if thread_id is not None:
        frame["custom_outputs"] = {"thread_id": thread_id}
    return frame


def sse(event: Event | str) -> str:
    """One server-sent event: an event as JSON, or a bare word ([DONE])."""
    return f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n"


def chat_message_id(message: BaseMessage) -> str | None:
    """The message's id in the thread API and for votes (its `"Message"` row's id), derived
    from its agent id as the chat messages are; None for a message without one (never
    stored in `"Message"`)."""
    return str(message_uuid(message)) if message.id else None
