"""The checkpointer the server uses: the linear saver on the app's pool (issue 6)."""

from __future__ import annotations

from lakebase_memory.database.pool import Pool
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver


def make_checkpointer(pool: Pool) -> AsyncLinearPostgresSaver:
    """A saver sharing the process pool; tables are created by `schema.ensure_schema`."""
    return AsyncLinearPostgresSaver(pool)
