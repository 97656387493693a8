"""`LakebaseClient`: roles and privileges on Lakebase or any PostgreSQL, synchronously.

The reference SDK's names, signatures, texts and error mapping (`databricks_ai_bridge.lakebase`),
plus revokes, database privileges, default privileges, `role_exists` and `privileges_of`.
Every operation is a program in `operations.py`, and every method is in `api.py`, both shared
with `AsyncLakebaseClient`; this module is the sync driver.

Example (the seed's "Option A", with this import):

    from lakebase_memory import LakebaseClient, SchemaPrivilege, TablePrivilege

    client = LakebaseClient(instance_name="my-instance")
    client.create_role(app_sp, "SERVICE_PRINCIPAL")
    client.grant_schema(grantee=app_sp, privileges=[SchemaPrivilege.USAGE],
                        schemas=["ai_chatbot"])
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from lakebase_memory.access import operations as ops
from lakebase_memory.access.api import PrivilegeApi
from lakebase_memory.access.connection import (
    LakebaseParams,
    SyncPool,
    lakebase_connector,
    sync_pool_for,
)

if TYPE_CHECKING:
    from lakebase_memory.database.targets import DatabaseTarget

T = TypeVar("T")


class LakebaseClient(PrivilegeApi):
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

    def _setup(
        self, pool: SyncPool | None, params: LakebaseParams, pool_kwargs: dict[str, Any]
    ) -> None:
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
        step = ops.start(program)
        while isinstance(step, ops.Query):
            step = ops.advance(program, self._attempt(step))
        return step.value  # type: ignore[no-any-return]

    def _attempt(self, query: ops.Query) -> ops.Rows | psycopg.Error:
        try:
            return self._query(query)
        except psycopg.Error as error:
            return error

    def _query(self, query: ops.Query) -> ops.Rows:
        with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(query.statement, query.params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else None
