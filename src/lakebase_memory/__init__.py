"""lakebase-memory: an agent server whose conversations persist in PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Loaded on first use, so that `import lakebase_memory` stays light.
_ACCESS_NAMES = (
    "AsyncLakebaseClient",
    "DatabasePrivilege",
    "LakebaseClient",
    "SchemaPrivilege",
    "SequencePrivilege",
    "TablePrivilege",
)
_SAVER_NAMES = ("AsyncLinearPostgresSaver", "LinearPostgresSaver")
# databricks-langchain's names (`compat`): its code runs with the import changed to this one.
_DROP_IN_NAMES = (
    "AsyncCheckpointSaver",
    "AsyncDatabricksStore",
    "CheckpointSaver",
    "DatabricksStore",
)
__all__ = ["__version__", *_ACCESS_NAMES, *_SAVER_NAMES, *_DROP_IN_NAMES]

if TYPE_CHECKING:
    from lakebase_memory.access import (
        AsyncLakebaseClient as AsyncLakebaseClient,
    )
    from lakebase_memory.access import (
        DatabasePrivilege as DatabasePrivilege,
    )
    from lakebase_memory.access import (
        LakebaseClient as LakebaseClient,
    )
    from lakebase_memory.access import (
        SchemaPrivilege as SchemaPrivilege,
    )
    from lakebase_memory.access import (
        SequencePrivilege as SequencePrivilege,
    )
    from lakebase_memory.access import (
        TablePrivilege as TablePrivilege,
    )
    from lakebase_memory.compat import (
        AsyncCheckpointSaver as AsyncCheckpointSaver,
    )
    from lakebase_memory.compat import (
        AsyncDatabricksStore as AsyncDatabricksStore,
    )
    from lakebase_memory.compat import (
        CheckpointSaver as CheckpointSaver,
    )
    from lakebase_memory.compat import (
        DatabricksStore as DatabricksStore,
    )
    from lakebase_memory.memory.saver import (
        AsyncLinearPostgresSaver as AsyncLinearPostgresSaver,
    )
    from lakebase_memory.memory.saver import (
        LinearPostgresSaver as LinearPostgresSaver,
    )


def __getattr__(name: str) -> Any:
    if name in _ACCESS_NAMES:
        from lakebase_memory import access

        return getattr(access, name)
    if name in _SAVER_NAMES:
        from lakebase_memory.memory import saver

        return getattr(saver, name)
    if name in _DROP_IN_NAMES:
        from lakebase_memory import compat

        return getattr(compat, name)
    raise AttributeError(f"module 'lakebase_memory' has no attribute {name!r}")
