"""Long-term memory: what the agent remembers of a user across threads (LangGraph BaseStore
on PostgreSQL, searched by words and, with an embedding model, by meaning)."""

from lakebase_memory.memory.store.namespaces import USER_MEMORIES, namespace_prefix, user_namespace
from lakebase_memory.memory.store.stores import AsyncMemoryStore, MemoryStore
from lakebase_memory.memory.store.text_search import SEARCH_TEXT_EXPRESSION, tsquery_text
from lakebase_memory.memory.store.values import unstorable_text

__all__ = [
    "SEARCH_TEXT_EXPRESSION",
    "USER_MEMORIES",
    "AsyncMemoryStore",
    "MemoryStore",
    "namespace_prefix",
    "tsquery_text",
    "unstorable_text",
    "user_namespace",
]
