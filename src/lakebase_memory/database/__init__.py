"""Database targets (embedded, any PostgreSQL) and the process's connection pool."""

from lakebase_memory.database.embedded import EmbeddedPostgres
from lakebase_memory.database.pool import Pool, check_login, open_pool
from lakebase_memory.database.targets import (
    MISSING_LAKEBASE_CONFIGURATION,
    DatabaseTarget,
    TargetKind,
    describe_conninfo,
    open_target,
)

__all__ = [
    "MISSING_LAKEBASE_CONFIGURATION",
    "DatabaseTarget",
    "EmbeddedPostgres",
    "Pool",
    "TargetKind",
    "check_login",
    "describe_conninfo",
    "open_pool",
    "open_target",
]
