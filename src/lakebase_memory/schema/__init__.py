"""Schema set-up and migrations: checkpoint tables, chat tables, bookkeeping."""

from lakebase_memory.schema.app_migrations import BOOKKEEPING_SCHEMA, CHAT_SCHEMA, MIGRATIONS
from lakebase_memory.schema.migrations import (
    CHECKPOINT_TABLES,
    ensure_schema,
    pending_migrations,
)

__all__ = [
    "BOOKKEEPING_SCHEMA",
    "CHAT_SCHEMA",
    "CHECKPOINT_TABLES",
    "MIGRATIONS",
    "ensure_schema",
    "pending_migrations",
]
