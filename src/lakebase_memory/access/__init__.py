"""Access control: roles and privileges on Lakebase or PostgreSQL.

`LakebaseClient` / `AsyncLakebaseClient` have the reference SDK's API
(`databricks_ai_bridge.lakebase`) plus revokes, database and default privileges, `role_exists`
and `privileges_of`; `lakebase-memory grant` uses them to give an app's principal what it needs.
"""

from lakebase_memory.access.async_client import AsyncLakebaseClient
from lakebase_memory.access.client import LakebaseClient
from lakebase_memory.access.errors import (
    AccessError,
    AccessPermissionError,
    AccessRuntimeError,
    AccessValueError,
)
from lakebase_memory.access.privileges import (
    DatabasePrivilege,
    IdentityType,
    SchemaPrivilege,
    SequencePrivilege,
    TablePrivilege,
)
from lakebase_memory.access.report import Grant, PrivilegeReport
from lakebase_memory.access.statements import DefaultObjects

__all__ = [
    "AccessError",
    "AccessPermissionError",
    "AccessRuntimeError",
    "AccessValueError",
    "AsyncLakebaseClient",
    "DatabasePrivilege",
    "DefaultObjects",
    "Grant",
    "IdentityType",
    "LakebaseClient",
    "PrivilegeReport",
    "SchemaPrivilege",
    "SequencePrivilege",
    "TablePrivilege",
]
