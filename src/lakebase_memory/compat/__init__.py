"""Drop-in names of other libraries, backed by this project's savers, store and connections.

`databricks_langchain`: `CheckpointSaver`, `AsyncCheckpointSaver`, `DatabricksStore`,
`AsyncDatabricksStore` (also importable from `lakebase_memory` itself).
"""

from lakebase_memory.compat.databricks_langchain import (
    AsyncCheckpointSaver,
    AsyncDatabricksStore,
    CheckpointSaver,
    DatabricksStore,
)

__all__ = ["AsyncCheckpointSaver", "AsyncDatabricksStore", "CheckpointSaver", "DatabricksStore"]
