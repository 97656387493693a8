"""The caller's long-term memories: list, search, read, write, delete, forget all.

What the agent's memory tools save (`save_user_memory`) is what this API shows: items of the
memory store in the caller's namespace (`user_namespace`). The caller is the server's identity
for the request (`caller_id`), so a user only ever reaches their own memories: another user's
key is simply not there (`404 memory_not_found`).

Reading through this API does not refresh the items' TTL (the agent's reads do): looking at
what is remembered does not keep it longer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from langgraph.store.base import Item
from pydantic import BaseModel, Field, field_validator

from lakebase_memory.memory.lifecycle import iso_utc
from lakebase_memory.memory.store import AsyncMemoryStore, unstorable_text, user_namespace
from lakebase_memory.server.errors import ApiError
from lakebase_memory.server.identity import caller_id

router = APIRouter(prefix="/api/memories", tags=["memories"])

MAX_KEY_CHARS = 512  # the memory tools' bound on `memory_key`
MAX_PAGE = 100


class MemoryBody(BaseModel):
    value: dict[str, Any] = Field(
        description='the memory, a JSON object such as {"fact": "prefers short answers"}'
    )

    @field_validator("value", mode="before")
    @classmethod
    def _an_object(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(
                'must be a JSON object, such as {"fact": "prefers short answers"}, '
                f"not {_json_kind(value)}"
            )
        problem = unstorable_text(value)
        if problem:
            raise ValueError(problem)
        return value


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def store_of(request: Request) -> AsyncMemoryStore:
    store: AsyncMemoryStore = request.app.state.runtime.store
    return store


def _caller(request: Request) -> str:
    return caller_id(request, request.app.state.runtime.settings)


def valid_key(key: str) -> str:
    if not key.strip():
        raise ApiError(
            422,
            "invalid_memory_key",
            "The memory key is empty: name the memory in the path, "
            "e.g. PUT /api/memories/favourite_colour.",
        )
    if len(key) > MAX_KEY_CHARS:
        raise ApiError(
            422,
            "invalid_memory_key",
            f"The memory key is {len(key)} characters long; at most {MAX_KEY_CHARS} are "
            "allowed: use a shorter key.",
        )
    if "\x00" in key:
        raise ApiError(
            422, "invalid_memory_key", "The memory key may not contain NUL (\\u0000) characters."
        )
    return key


def item_json(item: Item) -> dict[str, Any]:
    return {
        "key": item.key,
        "value": item.value,
        "created_at": iso_utc(item.created_at),
        "updated_at": iso_utc(item.updated_at),
        "score": getattr(item, "score", None),
    }


def _not_found(key: str) -> ApiError:
    return ApiError(
        404,
        "memory_not_found",
        f"No memory with the key {key!r} is kept for you: GET /api/memories lists yours.",
    )


@router.get("", summary="The caller's memories, most recently updated first, or a search")
async def list_memories(
    request: Request,
    query: str | None = Query(
        None, description="words to search for (best match first); empty lists all"
    ),
    limit: int = Query(20, ge=1, le=MAX_PAGE),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> dict[str, Any]:
    user = _caller(request)
    if query is not None and "\x00" in query:
        raise ApiError(
            422,
            "invalid_request",
            "Invalid request: query: may not contain NUL (\\u0000) characters.",
            [{"field": "query", "problem": "contains a NUL character"}],
        )
    words = query if query and query.strip() else None
    # One more than asked for: whether a next page exists, without counting them all.
    found = await store_of(request).asearch(
        user_namespace(user), query=words, limit=limit + 1, offset=offset, refresh_ttl=False
    )
    more = len(found) > limit
    return {
        "memories": [item_json(item) for item in found[:limit]],
        "query": words,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
    }


@router.delete("", summary="Forget everything the agent remembers about the caller")
async def forget_all(
    request: Request,
    confirm: str | None = Query(None, description="must be `all`: this cannot be undone"),
) -> dict[str, Any]:
    user = _caller(request)
    if confirm != "all":
        raise ApiError(
            400,
            "confirmation_required",
            "This deletes every memory the agent keeps about you and cannot be undone: "
            "call DELETE /api/memories?confirm=all to confirm.",
        )
    deleted = await store_of(request).aforget_user(user)
    return {"user": user, "deleted": deleted}


@router.get("/{key:path}", summary="One memory")
async def get_memory(request: Request, key: str) -> dict[str, Any]:
    user = _caller(request)
    item = await store_of(request).aget(user_namespace(user), valid_key(key), refresh_ttl=False)
    if item is None:
        raise _not_found(key)
    return item_json(item)


@router.put("/{key:path}", summary="Create or replace a memory")
async def put_memory(request: Request, key: str, body: MemoryBody) -> dict[str, Any]:
    user = _caller(request)
    store = store_of(request)
    namespace = user_namespace(user)
    await store.aput(namespace, valid_key(key), body.value)
    item = await store.aget(namespace, key, refresh_ttl=False)
    if item is None:  # deleted by another request between the two statements
        raise _not_found(key)
    return item_json(item)


@router.delete("/{key:path}", status_code=204, summary="Delete a memory")
async def delete_memory(request: Request, key: str) -> Response:
    user = _caller(request)
    store = store_of(request)
    namespace = user_namespace(user)
    if await store.aget(namespace, valid_key(key), refresh_ttl=False) is None:
        raise _not_found(key)
    await store.adelete(namespace, key)
    return Response(status_code=204)
