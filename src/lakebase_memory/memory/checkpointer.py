"""The checkpointer the server uses: LangGraph's Postgres saver on the app's pool."""

from __future__ import annotations

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from lakebase_memory.database.pool import Pool


def make_checkpointer(pool: Pool) -> AsyncPostgresSaver:
    """A saver sharing the process pool; tables are created by `schema.ensure_schema`."""
    return AsyncPostgresSaver(pool)  # type: ignore[arg-type]
