"""`LakebaseClient`: roles and privileges on Lakebase or any PostgreSQL, synchronously.

The reference SDK's names, signatures, texts and error mapping (`databricks_ai_bridge.lakebase`),
plus revokes, database privileges, default privileges, `role_exists` and `privileges_of`.
Every operation is a program in `operations.py`, shared with `AsyncLakebaseClient`.

Example (the seed's "Option A", with this import):

    from lakebase_memory import LakebaseClient, SchemaPrivilege, TablePrivilege

    client = LakebaseClient(instance_name="my-instance")
    client.create_role(app_sp, "SERVICE_PRINCIPAL")
    client.grant_schema(grantee=app_sp, privileges=[SchemaPrivilege.USAGE],
                        schemas=["ai_chatbot"])
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import Composable
from psycopg_pool import ConnectionPool

from lakebase_memory.access import operations as ops
from lakebase_memory.access.connection import (
    LakebaseParams,
    SyncPool,
    check_connection_args,
    lakebase_connector,
    sync_pool_for,
)
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

if TYPE_CHECKING:
    from lakebase_memory.database.targets import DatabaseTarget

T = TypeVar("T")
TableName = str | tuple[str, str]


class LakebaseClient:
    """Run SQL and manage roles and privileges; a context manager (`close()` on exit).

    Give exactly one of: `pool` (anything with a `connection()` context manager yielding a
    psycopg connection, e.g. a `psycopg_pool.ConnectionPool`, on Lakebase or plain
    PostgreSQL: it stays yours to close), `instance_name` (a provisioned instance, by name or
    host), `autoscaling_endpoint`, or `project` + `branch`. For the last three the client finds
    the host and your identity through the Databricks SDK and logs in with database
    credentials it mints and renews; `workspace_client=` and `settings=` may be passed, and
    the other keyword arguments go to `psycopg_pool.ConnectionPool` (min_size=1, max_size=10,
    timeout=30 by default).
    """

    def __init__(
        self,
        *,
        pool: SyncPool | None = None,
        instance_name: str | None = None,
        autoscaling_endpoint: str | None = None,
        project: str | None = None,
        branch: str | None = None,
        **pool_kwargs: Any,
    ) -> None:
        params = LakebaseParams(instance_name, autoscaling_endpoint, project, branch)
        check_connection_args(pool, params)
        self._owned: ConnectionPool[psycopg.Connection[Any]] | None = None
        if pool is None:
            connector = lakebase_connector(
                params,
                settings=pool_kwargs.pop("settings", None),
                workspace_client=pool_kwargs.pop("workspace_client", None),
            )
            pool = self._owned = sync_pool_for(connector=connector, **pool_kwargs)
        self._pool: SyncPool = pool

    @classmethod
    def from_target(cls, target: DatabaseTarget, **pool_kwargs: Any) -> Self:
        """A client on a target from `open_target(settings)` (what the CLI connects to)."""
        pool = sync_pool_for(target=target, **pool_kwargs)
        client = cls(pool=pool)
        client._owned = pool
        return client

    @property
    def pool(self) -> SyncPool:
        return self._pool

    def close(self) -> None:
        """Close the pool if the client opened it (a pool you gave stays open). Idempotent."""
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- the driver ------------------------------------------------------------------------

    def _run(self, program: ops.Program[T]) -> T:
        try:
            query = next(program)
            while True:
                try:
                    rows = self._query(query)
                except psycopg.Error as error:
                    query = program.throw(error)
                else:
                    query = program.send(rows)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _query(self, query: ops.Query) -> ops.Rows:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(query.statement, query.params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else None

    # --- SQL -------------------------------------------------------------------------------

    def execute(self, sql: str | Composable, params: ops.Params = None) -> ops.Rows:
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
    ) -> ops.Rows:
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

    def role_exists(self, role: str) -> bool:
        return self._run(ops.role_exists(role))

    def privileges_of(self, role: str) -> PrivilegeReport:
        """What `role` holds on this database (read-only)."""
        return self._run(ops.privileges_of(role))

    # --- grants (the reference's four, then the additions) -----------------------------------

    def grant_schema(
        self, grantee: str, privileges: Sequence[SchemaPrivilege], schemas: Sequence[str]
    ) -> None:
        """`GRANT ... ON SCHEMA "s" TO "grantee"`, per schema."""
        self._run(ops.change_privileges(ops.SCHEMAS, grantee, privileges, schemas))

    def grant_all_tables_in_schema(
        self, grantee: str, privileges: Sequence[TablePrivilege], schemas: Sequence[str]
    ) -> None:
        """`GRANT ... ON ALL TABLES IN SCHEMA "s"`: the tables that exist now only (see
        `alter_default_privileges` for later ones)."""
        self._run(ops.change_privileges(ops.ALL_TABLES, grantee, privileges, schemas))

    def grant_table(
        self, grantee: str, privileges: Sequence[TablePrivilege], tables: Sequence[TableName]
    ) -> None:
        """`GRANT ... ON "s"."t"`; names are `schema.table`, `table`, or `(schema, table)`."""
        self._run(ops.change_privileges(ops.TABLES, grantee, privileges, tables))

    def grant_all_sequences_in_schema(
        self, grantee: str, privileges: Sequence[SequencePrivilege], schemas: Sequence[str]
    ) -> None:
        self._run(ops.change_privileges(ops.ALL_SEQUENCES, grantee, privileges, schemas))

    def grant_sequence(
        self,
        grantee: str,
        privileges: Sequence[SequencePrivilege],
        sequences: Sequence[TableName],
    ) -> None:
        self._run(ops.change_privileges(ops.SEQUENCES, grantee, privileges, sequences))

    def grant_database(
        self,
        grantee: str,
        privileges: Sequence[DatabasePrivilege],
        databases: Sequence[str] | None = None,
    ) -> None:
        """CONNECT, CREATE, TEMPORARY on databases (default: the one connected to)."""
        self._run(ops.change_database_privileges(grantee, privileges, databases))

    def alter_default_privileges(
        self,
        grantee: str,
        privileges: Sequence[TablePrivilege] | Sequence[SequencePrivilege],
        *,
        owner: str,
        schemas: Sequence[str],
        objects: DefaultObjects | str | None = None,
    ) -> None:
        """Privileges `grantee` gets on tables (or sequences) that `owner` creates later in
        `schemas`: `ALTER DEFAULT PRIVILEGES FOR ROLE "owner" IN SCHEMA "s" GRANT ...`.
        Default privileges belong to the creating role, so `owner` is explicit."""
        self._run(
            ops.default_privileges(
                grantee, privileges, owner=owner, schemas=schemas, objects=objects
            )
        )

    # --- revokes ---------------------------------------------------------------------------

    def revoke_schema(
        self, grantee: str, privileges: Sequence[SchemaPrivilege], schemas: Sequence[str]
    ) -> None:
        self._run(ops.change_privileges(ops.SCHEMAS, grantee, privileges, schemas, revoke=True))

    def revoke_all_tables_in_schema(
        self, grantee: str, privileges: Sequence[TablePrivilege], schemas: Sequence[str]
    ) -> None:
        self._run(ops.change_privileges(ops.ALL_TABLES, grantee, privileges, schemas, revoke=True))

    def revoke_table(
        self, grantee: str, privileges: Sequence[TablePrivilege], tables: Sequence[TableName]
    ) -> None:
        self._run(ops.change_privileges(ops.TABLES, grantee, privileges, tables, revoke=True))

    def revoke_all_sequences_in_schema(
        self, grantee: str, privileges: Sequence[SequencePrivilege], schemas: Sequence[str]
    ) -> None:
        self._run(
            ops.change_privileges(ops.ALL_SEQUENCES, grantee, privileges, schemas, revoke=True)
        )

    def revoke_sequence(
        self,
        grantee: str,
        privileges: Sequence[SequencePrivilege],
        sequences: Sequence[TableName],
    ) -> None:
        self._run(ops.change_privileges(ops.SEQUENCES, grantee, privileges, sequences, revoke=True))

    def revoke_database(
        self,
        grantee: str,
        privileges: Sequence[DatabasePrivilege],
        databases: Sequence[str] | None = None,
    ) -> None:
        self._run(ops.change_database_privileges(grantee, privileges, databases, revoke=True))

    def revoke_default_privileges(
        self,
        grantee: str,
        privileges: Sequence[TablePrivilege] | Sequence[SequencePrivilege],
        *,
        owner: str,
        schemas: Sequence[str],
        objects: DefaultObjects | str | None = None,
    ) -> None:
        self._run(
            ops.default_privileges(
                grantee, privileges, owner=owner, schemas=schemas, objects=objects, revoke=True
            )
        )
