"""The roles-and-privileges API of `LakebaseClient` and `AsyncLakebaseClient`, written once.

Each method builds its program (`operations.py`) and hands it to the client's `_run`: the sync
client runs it and returns the result, the async client returns an awaitable of the result
(`await client.grant_schema(...)`). So the two clients have one set of methods, signatures and
contracts, as redis-py's sync and asyncio clients share their command methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, TypeAlias, TypeVar

from psycopg.sql import Composable

from lakebase_memory.access import operations as ops
from lakebase_memory.access.connection import LakebaseParams, check_connection_args
from lakebase_memory.access.privileges import (
    DatabasePrivilege,
    IdentityType,
    IdentityTypeName,
    SchemaPrivilege,
    SequencePrivilege,
    TablePrivilege,
)
from lakebase_memory.access.report import PrivilegeReport
from lakebase_memory.access.statements import DefaultObjects

T = TypeVar("T")
# What a method returns: the result (sync client) or an awaitable of it (async client).
Returns: TypeAlias = T | Awaitable[T]
TableName = str | tuple[str, str]


class PrivilegeApi:
    """The methods, and the constructor's forms (see `LakebaseClient`); a client supplies
    `_setup` and `_run` (see the module's docstring)."""

    def __init__(
        self,
        *,
        pool: Any = None,
        instance_name: str | None = None,
        autoscaling_endpoint: str | None = None,
        project: str | None = None,
        branch: str | None = None,
        **pool_kwargs: Any,
    ) -> None:
        params = LakebaseParams(instance_name, autoscaling_endpoint, project, branch)
        check_connection_args(pool, params)
        self._setup(pool, params, pool_kwargs)

    def _setup(self, pool: Any, params: LakebaseParams, pool_kwargs: dict[str, Any]) -> None:
        """Keep the pool given, or what makes one (`pool` None: `params` names Lakebase)."""
        raise NotImplementedError

    def _run(self, program: ops.Program[T]) -> Any:
        raise NotImplementedError

    # --- SQL -------------------------------------------------------------------------------

    def execute(self, sql: str | Composable, params: ops.Params = None) -> Returns[ops.Rows]:
        """Run one statement; its rows as dicts, or None when it returns none.
        Pass values as `params` (`%s` / `%(name)s`), never in the SQL text."""
        return self._run(ops.execute(sql, params))

    # --- roles -----------------------------------------------------------------------------

    def create_role(
        self,
        identity_name: str,
        identity_type: IdentityTypeName | IdentityType,
        *,
        ensure_extension: bool = True,
    ) -> Returns[ops.Rows]:
        """Create a Postgres role for a Databricks identity (`databricks_create_role`).

        An existing role is not an error (logged). On a server without the databricks_auth
        extension (plain PostgreSQL) a plain LOGIN role (NOLOGIN for a GROUP) is created
        instead, with a warning. Raises ValueError (identity not in the workspace, invalid
        type), PermissionError (the caller may not create roles), RuntimeError (no
        databricks_create_role and `ensure_extension=False`).
        """
        return self._run(
            ops.create_role(identity_name, identity_type, ensure_extension=ensure_extension)
        )

    def role_exists(self, role: str) -> Returns[bool]:
        return self._run(ops.role_exists(role))

    def privileges_of(self, role: str) -> Returns[PrivilegeReport]:
        """What `role` holds on this database (read-only)."""
        return self._run(ops.privileges_of(role))

    # --- grants (the reference's four, then the additions) -----------------------------------

    def grant_schema(
        self, grantee: str, privileges: Sequence[SchemaPrivilege], schemas: Sequence[str]
    ) -> Returns[None]:
        """`GRANT ... ON SCHEMA "s" TO "grantee"`, per schema."""
        return self._run(ops.change_privileges(ops.SCHEMAS, grantee, privileges, schemas))

    def grant_all_tables_in_schema(
        self, grantee: str, privileges: Sequence[TablePrivilege], schemas: Sequence[str]
    ) -> Returns[None]:
        """`GRANT ... ON ALL TABLES IN SCHEMA "s"`: the tables that exist now only (see
        `alter_default_privileges` for later ones)."""
        return self._run(ops.change_privileges(ops.ALL_TABLES, grantee, privileges, schemas))

    def grant_table(
        self, grantee: str, privileges: Sequence[TablePrivilege], tables: Sequence[TableName]
    ) -> Returns[None]:
        """`GRANT ... ON "s"."t"`; names are `schema.table`, `table`, or `(schema, table)`."""
        return self._run(ops.change_privileges(ops.TABLES, grantee, privileges, tables))

    def grant_all_sequences_in_schema(
        self, grantee: str, privileges: Sequence[SequencePrivilege], schemas: Sequence[str]
    ) -> Returns[None]:
        return self._run(ops.change_privileges(ops.ALL_SEQUENCES, grantee, privileges, schemas))

    def grant_sequence(
        self,
        grantee: str,
        privileges: Sequence[SequencePrivilege],
        sequences: Sequence[TableName],
    ) -> Returns[None]:
        return self._run(ops.change_privileges(ops.SEQUENCES, grantee, privileges, sequences))

    def grant_database(
        self,
        grantee: str,
        privileges: Sequence[DatabasePrivilege],
        databases: Sequence[str] | None = None,
    ) -> Returns[None]:
        """CONNECT, CREATE, TEMPORARY on databases (default: the one connected to)."""
        return self._run(ops.change_database_privileges(grantee, privileges, databases))

    def alter_default_privileges(
        self,
        grantee: str,
        privileges: Sequence[TablePrivilege] | Sequence[SequencePrivilege],
        *,
        owner: str,
        schemas: Sequence[str],
        objects: DefaultObjects | str | None = None,
    ) -> Returns[None]:
        """Privileges `grantee` gets on tables (or sequences) that `owner` creates later in
        `schemas`: `ALTER DEFAULT PRIVILEGES FOR ROLE "owner" IN SCHEMA "s" GRANT ...`.
        Default privileges belong to the creating role, so `owner` is explicit."""
        return self._run(
            ops.default_privileges(
                grantee, privileges, owner=owner, schemas=schemas, objects=objects
            )
        )

    # --- revokes ---------------------------------------------------------------------------

    def revoke_schema(
        self, grantee: str, privileges: Sequence[SchemaPrivilege], schemas: Sequence[str]
    ) -> Returns[None]:
        return self._run(
            ops.change_privileges(ops.SCHEMAS, grantee, privileges, schemas, revoke=True)
        )

    def revoke_all_tables_in_schema(
        self, grantee: str, privileges: Sequence[TablePrivilege], schemas: Sequence[str]
    ) -> Returns[None]:
        return self._run(
            ops.change_privileges(ops.ALL_TABLES, grantee, privileges, schemas, revoke=True)
        )

    def revoke_table(
        self, grantee: str, privileges: Sequence[TablePrivilege], tables: Sequence[TableName]
    ) -> Returns[None]:
        return self._run(
            ops.change_privileges(ops.TABLES, grantee, privileges, tables, revoke=True)
        )

    def revoke_all_sequences_in_schema(
        self, grantee: str, privileges: Sequence[SequencePrivilege], schemas: Sequence[str]
    ) -> Returns[None]:
        return self._run(
            ops.change_privileges(ops.ALL_SEQUENCES, grantee, privileges, schemas, revoke=True)
        )

    def revoke_sequence(
        self,
        grantee: str,
        privileges: Sequence[SequencePrivilege],
        sequences: Sequence[TableName],
    ) -> Returns[None]:
        return self._run(
            ops.change_privileges(ops.SEQUENCES, grantee, privileges, sequences, revoke=True)
        )

    def revoke_database(
        self,
        grantee: str,
        privileges: Sequence[DatabasePrivilege],
        databases: Sequence[str] | None = None,
    ) -> Returns[None]:
        return self._run(
            ops.change_database_privileges(grantee, privileges, databases, revoke=True)
        )

    def revoke_default_privileges(
        self,
        grantee: str,
        privileges: Sequence[TablePrivilege] | Sequence[SequencePrivilege],
        *,
        owner: str,
        schemas: Sequence[str],
        objects: DefaultObjects | str | None = None,
    ) -> Returns[None]:
        return self._run(
            ops.default_privileges(
                grantee, privileges, owner=owner, schemas=schemas, objects=objects, revoke=True
            )
        )
