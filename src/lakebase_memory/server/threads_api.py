"""The caller's threads: list, read, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from lakebase_memory.memory.history import message_text
from lakebase_memory.server.identity import caller_id
from lakebase_memory.server.responses_api import runtime_of

router = APIRouter(prefix="/api/threads", tags=["threads"])

_ROLES = {"human": "user", "ai": "assistant", "tool": "tool", "system": "system"}


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


@router.get("/{thread_id:path}", summary="One thread with its messages")
async def get_thread(request: Request, thread_id: str) -> dict[str, Any]:
    runtime = runtime_of(request)
    summary = await runtime.threads.get(thread_id, caller_id(request, runtime.settings))
    state = await runtime.graph.aget_state({"configurable": {"thread_id": thread_id}})
    messages = state.values.get("messages", []) if state.values else []
    return {**summary.to_json(), "messages": [_message_json(m) for m in messages]}


@router.delete("/{thread_id:path}", status_code=204, summary="Delete a thread and its memory")
async def delete_thread(request: Request, thread_id: str) -> Response:
    runtime = runtime_of(request)
    await runtime.threads.delete(thread_id, caller_id(request, runtime.settings))
    return Response(status_code=204)


def _message_json(message: BaseMessage) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": message.id,
        "role": _ROLES.get(message.type, message.type),
        "content": message_text(message),
    }
    if isinstance(message, AIMessage) and message.tool_calls:
        data["tool_calls"] = [
            {"call_id": c["id"], "name": c["name"], "arguments": c["args"]}
            for c in message.tool_calls
        ]
    if isinstance(message, ToolMessage):
        data["call_id"] = message.tool_call_id
    return data
