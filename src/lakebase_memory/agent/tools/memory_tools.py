"""The agent's long-term memory tools: the reference's three, with its messages.

The user is the one the server identified for the turn (`configurable.user_id`, put there by
the turn from the request's identity; never a client-chosen id where identity is trusted).
The store is the graph's (`compile(store=...)`), injected by LangGraph's ToolNode.
"""

from __future__ import annotations

import json
from typing import Annotated

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt import InjectedStore
from langgraph.store.base import BaseStore

from lakebase_memory.memory.store import unstorable_text, user_namespace

SEARCH_LIMIT = 5


def _user(config: RunnableConfig) -> str | None:
    user = (config.get("configurable") or {}).get("user_id")
    return str(user) if user else None


@tool
async def get_user_memory(
    query: str,
    config: RunnableConfig,
    store: Annotated[BaseStore | None, InjectedStore()] = None,
) -> str:
    """Search for relevant information about the user from long-term memory."""
    user = _user(config)
    if not user:
        return "Memory not available - no user_id provided."
    if store is None:
        return "Memory not available - store not configured."
    results = await store.asearch(user_namespace(user), query=query, limit=SEARCH_LIMIT)
    if not results:
        return "No memories found for this user."
    lines = [f"- [{item.key}]: {json.dumps(item.value)}" for item in results]
    return f"Found {len(results)} relevant memories:\n" + "\n".join(lines)


@tool
async def save_user_memory(
    memory_key: str,
    memory_data_json: str,
    config: RunnableConfig,
    store: Annotated[BaseStore | None, InjectedStore()] = None,
) -> str:
    """Save information about the user to long-term memory. memory_data_json is a JSON
    object, for example {"fact": "prefers short answers"}."""
    user = _user(config)
    if not user:
        return "Cannot save memory - no user_id provided."
    if store is None:
        return "Cannot save memory - store not configured."
    try:
        data = json.loads(memory_data_json)
    except json.JSONDecodeError as error:
        return f"Failed to save memory: Invalid JSON - {error}"
    if not isinstance(data, dict):
        return f"Failed: memory_data must be a JSON object, not {type(data).__name__}"
    if not memory_key.strip() or "\x00" in memory_key or len(memory_key) > 512:
        return "Failed: memory_key must be 1 to 512 characters, without NUL."
    if problem := unstorable_text(data):
        return f"Failed: memory_data_json {problem}"
    await store.aput(user_namespace(user), memory_key, data)
    return f"Successfully saved memory '{memory_key}' for user."


@tool
async def delete_user_memory(
    memory_key: str,
    config: RunnableConfig,
    store: Annotated[BaseStore | None, InjectedStore()] = None,
) -> str:
    """Delete a specific memory from the user's long-term memory."""
    user = _user(config)
    if not user:
        return "Cannot delete memory - no user_id provided."
    if store is None:
        return "Cannot delete memory - store not configured."
    await store.adelete(user_namespace(user), memory_key)
    return f"Successfully deleted memory '{memory_key}' for user."


MEMORY_TOOLS: tuple[BaseTool, ...] = (get_user_memory, save_user_memory, delete_user_memory)
