"""The long-term memory store: LangGraph's PostgresStore (its tables, migrations, TTLs and
vector search, so existing stores read as they are) with search by words (`text_search`)
and the erasure of a user's memories.

`AsyncMemoryStore` serves the app (on the app's pool); `MemoryStore` is its sync face, for
scripts and sync graphs. Both take what LangGraph's stores take: a connection or a pool, and
optionally `index` (embeddings, for search by meaning) and `ttl`.
"""

from __future__ import annotations

from langgraph.store.postgres import AsyncPostgresStore, PostgresStore

from lakebase_memory.memory.store.namespaces import namespace_patterns
from lakebase_memory.memory.store.text_search import TextSearchMixin

# A user's rows: their namespace and everything below it (LIKE with its wildcards escaped).
_FORGET_USER = r"""
DELETE FROM store
WHERE prefix = %(prefix)s OR prefix LIKE %(below)s ESCAPE '\'"""


class MemoryStore(TextSearchMixin, PostgresStore):
    def forget_user(self, user_id: str) -> int:
        """Delete every memory of `user_id` (their vectors go with them); return how many."""
        with self._cursor() as cur:
            cur.execute(_FORGET_USER, namespace_patterns(user_id))
            return cur.rowcount


class AsyncMemoryStore(TextSearchMixin, AsyncPostgresStore):
    async def aforget_user(self, user_id: str) -> int:
        """Delete every memory of `user_id` (their vectors go with them); return how many."""
        async with self._cursor() as cur:
            await cur.execute(_FORGET_USER, namespace_patterns(user_id))
            return cur.rowcount
