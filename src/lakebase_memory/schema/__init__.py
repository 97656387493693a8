"""Schema set-up and migrations: checkpoint tables, chat tables, bookkeeping."""

from lakebase_memory.schema.app_migrations import (
    BOOKKEEPING_SCHEMA,
    CHAT_SCHEMA,
    CHECKPOINT_TABLES,
    MIGRATIONS,
)
from lakebase_memory.schema.migrations import ensure_schema, pending_migrations
from lakebase_memory.schema.privileges import missing_privileges

__all__ = [
    "BOOKKEEPING_SCHEMA",
    "CHAT_SCHEMA",
    "CHECKPOINT_TABLES",
    "MIGRATIONS",
    "ensure_schema",
    "missing_privileges",
    "pending_migrations",
]
