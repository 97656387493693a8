"""The caller's threads: list, read, rename, delete, erase all, and votes on answers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from pydantic import BaseModel, Field, field_validator

from lakebase_memory.agent.context import ContextState
from lakebase_memory.memory import ROLES, message_text, message_uuid
from lakebase_memory.memory.lifecycle import ThreadStore
from lakebase_memory.server.errors import ApiError
from lakebase_memory.server.identity import caller_id
from lakebase_memory.server.responses_api import runtime_of

router = APIRouter(prefix="/api/threads", tags=["threads"])


class RenameRequest(BaseModel):
    title: str = Field(max_length=200)

    @field_validator("title")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        title = " ".join(value.split())
        if not title:
            raise ValueError("title is empty")
        return title


class VoteRequest(BaseModel):
    up: bool = Field(description="true for thumbs up, false for thumbs down")


@router.get("", summary="The caller's threads, most recently active first")
async def list_threads(
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
) -> dict[str, Any]:
    runtime = runtime_of(request)
    page = await runtime.threads.list(
        caller_id(request, runtime.settings), limit=limit, cursor=cursor
    )
    return {"threads": [t.to_json() for t in page.threads], "next_cursor": page.next_cursor}


@router.delete("", summary="Erase everything of the caller: every thread, chat and checkpoint")
async def erase_my_data(
    request: Request,
    confirm: str | None = Query(None, description="must be `all`: this cannot be undone"),
) -> dict[str, Any]:
    runtime = runtime_of(request)
    user = caller_id(request, runtime.settings)
    if confirm != "all":
        raise ApiError(
            400,
            "confirmation_required",
            "This deletes all your threads, messages and memory and cannot be undone: "
            "call DELETE /api/threads?confirm=all to confirm.",
        )
    store = ThreadStore(runtime.pool, runtime.settings.checkpoint_schema)
    erased = await store.erase_user(user, batch_size=runtime.settings.memory_retention_batch_size)
    return {"user": user, "deleted": erased.to_json()}


@router.put(
    "/{thread_id:path}/messages/{message_id}/vote", status_code=204, summary="Vote on an answer"
)
async def vote(request: Request, thread_id: str, message_id: str, body: VoteRequest) -> Response:
    runtime = runtime_of(request)
    user = caller_id(request, runtime.settings)
    await runtime.messages.vote(thread_id, user, message_id, body.up)
    return Response(status_code=204)


@router.delete(
    "/{thread_id:path}/messages/{message_id}/vote", status_code=204, summary="Withdraw a vote"
)
async def unvote(request: Request, thread_id: str, message_id: str) -> Response:
    runtime = runtime_of(request)
    user = caller_id(request, runtime.settings)
    await runtime.messages.vote(thread_id, user, message_id, None)
    return Response(status_code=204)


@router.get("/{thread_id:path}", summary="One thread with its messages")
async def get_thread(request: Request, thread_id: str) -> dict[str, Any]:
    runtime = runtime_of(request)
    summary = await runtime.threads.get(thread_id, caller_id(request, runtime.settings))
    state = await runtime.graph.aget_state({"configurable": {"thread_id": thread_id}})
    messages = state.values.get("messages", []) if state.values else []
    votes = await runtime.messages.votes(thread_id)
    # A background response still running on the thread: the UI reattaches to its stream.
    active = None
    if runtime.responses is not None:
        active = await runtime.responses.rows.active_for_thread(thread_id, summary.user_id)
    # What the model is no longer sent of this thread, and the summary it gets instead.
    context = ContextState.load(state.values.get("context") if state.values else None)
    return {
        **summary.to_json(),
        "messages": [_message_json(m, votes) for m in messages],
        "active_response": None
        if active is None
        else {
            "id": active.id,
            "status": active.status,
            "input": active.input,
        },
        "context": {
            "messages_left_out": context.left_out,
            "notes": context.notes,
            "facts": list(context.facts),
        },
    }


@router.patch("/{thread_id:path}", summary="Rename a thread")
async def rename_thread(request: Request, thread_id: str, body: RenameRequest) -> dict[str, Any]:
    runtime = runtime_of(request)
    user = caller_id(request, runtime.settings)
    return (await runtime.threads.rename(thread_id, user, body.title)).to_json()


@router.delete("/{thread_id:path}", status_code=204, summary="Delete a thread and its memory")
async def delete_thread(request: Request, thread_id: str) -> Response:
    runtime = runtime_of(request)
    await runtime.threads.delete(thread_id, caller_id(request, runtime.settings))
    return Response(status_code=204)


def _message_json(message: BaseMessage, votes: dict[str, bool]) -> dict[str, Any]:
    """One message of a thread. An answer that called tools has `tool_calls` (each `call_id`,
    `name` and `arguments`, the object the model gave); a tool's result is a message of role
    `tool` naming its `call_id`, the tool's `name` and `status` (`success` or `error`), with
    the tool's output as its `content`."""
    message_id = str(message_uuid(message))
    data: dict[str, Any] = {
        "id": message_id,
        "role": ROLES.get(message.type, message.type),
        "content": message_text(message),
        "vote": votes.get(message_id),
    }
    if isinstance(message, AIMessage) and message.tool_calls:
        data["tool_calls"] = [
            {"call_id": c["id"], "name": c["name"], "arguments": c["args"]}
            for c in message.tool_calls
        ]
    if isinstance(message, ToolMessage):
        data["call_id"] = message.tool_call_id
        data["name"] = message.name
        data["status"] = message.status
    return data
