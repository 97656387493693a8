"""`AsyncLakebaseClient`: `LakebaseClient`'s API for asyncio (`await client.grant_schema(...)`).

Each method runs the same program (`operations.py`) as its sync twin; only the driver differs.
The constructor only validates: the pool opens (and, on Lakebase, the instance is resolved)
on `async with`, `await client.open()`, or the first call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import Composable
from psycopg_pool import AsyncConnectionPool

from lakebase_memory.access import operations as ops
from lakebase_memory.access.connection import (
    AsyncPool,
    LakebaseParams,
    async_pool_for,
    check_connection_args,
    lakebase_connector,
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


class AsyncLakebaseClient:
    """The async client: same constructor forms as `LakebaseClient` (with an
    `AsyncConnectionPool`-like `pool`), same methods, awaited. An async context manager."""

    def __init__(
        self,
        *,
        pool: AsyncPool | None = None,
        instance_name: str | None = None,
        autoscaling_endpoint: str | None = None,
        project: str | None = None,
        branch: str | None = None,
        **pool_kwargs: Any,
    ) -> None:
        params = LakebaseParams(instance_name, autoscaling_endpoint, project, branch)
        check_connection_args(pool, params)
        self._setup(pool, params, None, pool_kwargs)

    def _setup(
        self,
        pool: AsyncPool | None,
        params: LakebaseParams,
        target: DatabaseTarget | None,
        pool_kwargs: dict[str, Any],
    ) -> None:
        self._params = params
        self._pool: AsyncPool | None = pool
        self._owned: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._target = target
        self._settings = pool_kwargs.pop("settings", None)
        self._workspace_client = pool_kwargs.pop("workspace_client", None)
        self._pool_kwargs = pool_kwargs
        self._opening = asyncio.Lock()

    @classmethod
    def from_target(cls, target: DatabaseTarget, **pool_kwargs: Any) -> Self:
        """A client on a target from `open_target(settings)`; the pool opens on first use."""
        client = cls.__new__(cls)
        client._setup(None, LakebaseParams(), target, pool_kwargs)
        return client

    async def open(self) -> Self:
        """Open the pool (resolving the Lakebase target first). Idempotent."""
        async with self._opening:
            if self._pool is not None:
                return self
            if self._target is not None:
                self._owned = await async_pool_for(target=self._target, **self._pool_kwargs)
            else:
                connector = await asyncio.to_thread(
                    lakebase_connector,
                    self._params,
                    settings=self._settings,
                    workspace_client=self._workspace_client,
                )
                self._owned = await async_pool_for(connector=connector, **self._pool_kwargs)
            self._pool = self._owned
        return self

    @property
    def pool(self) -> AsyncPool | None:
        return self._pool

    async def close(self) -> None:
        """Close the pool if the client opened it. Idempotent."""
        if self._owned is not None:
            await self._owned.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- the driver ------------------------------------------------------------------------

    async def _run(self, program: ops.Program[T]) -> T:
        await self.open()
        try:
            query = next(program)
            while True:
                try:
                    rows = await self._query(query)
                except psycopg.Error as error:
                    query = program.throw(error)
                else:
                    query = program.send(rows)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _query(self, query: ops.Query) -> ops.Rows:
        assert self._pool is not None
        async with (
            self._pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(query.statement, query.params)  # type: ignore[arg-type]
            return await cursor.fetchall() if cursor.description else None

    # --- the API (see LakebaseClient for each method's contract) -------------------------------

    async def execute(self, sql: str | Composable, params: ops.Params = None) -> ops.Rows:
        return await self._run(ops.execute(sql, params))

    async def create_role(
        self,
        identity_name: str,
        identity_type: IdentityTypeName | IdentityType,
        *,
        ensure_extension: bool = True,
    ) -> ops.Rows:
        return await self._run(
            ops.create_role(identity_name, identity_type, ensure_extension=ensure_extension)
        )

    async def role_exists(self, role: str) -> bool:
        return await self._run(ops.role_exists(role))

    async def privileges_of(self, role: str) -> PrivilegeReport:
        return await self._run(ops.privileges_of(role))

    async def grant_schema(
        self, grantee: str, privileges: Sequence[SchemaPrivilege], schemas: Sequence[str]
    ) -> None:
        await self._run(ops.change_privileges(ops.SCHEMAS, grantee, privileges, schemas))

    async def grant_all_tables_in_schema(
        self, grantee: str, privileges: Sequence[TablePrivilege], schemas: Sequence[str]
    ) -> None:
        await self._run(ops.change_privileges(ops.ALL_TABLES, grantee, privileges, schemas))

    async def grant_table(
        self, grantee: str, privileges: Sequence[TablePrivilege], tables: Sequence[TableName]
    ) -> None:
        await self._run(ops.change_privileges(ops.TABLES, grantee, privileges, tables))

    async def grant_all_sequences_in_schema(
        self, grantee: str, privileges: Sequence[SequencePrivilege], schemas: Sequence[str]
    ) -> None:
        await self._run(ops.change_privileges(ops.ALL_SEQUENCES, grantee, privileges, schemas))

    async def grant_sequence(
        self,
        grantee: str,
        privileges: Sequence[SequencePrivilege],
        sequences: Sequence[TableName],
    ) -> None:
        await self._run(ops.change_privileges(ops.SEQUENCES, grantee, privileges, sequences))

    async def grant_database(
        self,
        grantee: str,
        privileges: Sequence[DatabasePrivilege],
        databases: Sequence[str] | None = None,
    ) -> None:
        await self._run(ops.change_database_privileges(grantee, privileges, databases))

    async def alter_default_privileges(
        self,
        grantee: str,
        privileges: Sequence[TablePrivilege] | Sequence[SequencePrivilege],
        *,
        owner: str,
        schemas: Sequence[str],
        objects: DefaultObjects | str | None = None,
    ) -> None:
        await self._run(
            ops.default_privileges(
                grantee, privileges, owner=owner, schemas=schemas, objects=objects
            )
        )

    async def revoke_schema(
        self, grantee: str, privileges: Sequence[SchemaPrivilege], schemas: Sequence[str]
    ) -> None:
        await self._run(
            ops.change_privileges(ops.SCHEMAS, grantee, privileges, schemas, revoke=True)
        )

    async def revoke_all_tables_in_schema(
        self, grantee: str, privileges: Sequence[TablePrivilege], schemas: Sequence[str]
    ) -> None:
        await self._run(
            ops.change_privileges(ops.ALL_TABLES, grantee, privileges, schemas, revoke=True)
        )

    async def revoke_table(
        self, grantee: str, privileges: Sequence[TablePrivilege], tables: Sequence[TableName]
    ) -> None:
        await self._run(ops.change_privileges(ops.TABLES, grantee, privileges, tables, revoke=True))

    async def revoke_all_sequences_in_schema(
        self, grantee: str, privileges: Sequence[SequencePrivilege], schemas: Sequence[str]
    ) -> None:
        await self._run(
            ops.change_privileges(ops.ALL_SEQUENCES, grantee, privileges, schemas, revoke=True)
        )

    async def revoke_sequence(
        self,
        grantee: str,
        privileges: Sequence[SequencePrivilege],
        sequences: Sequence[TableName],
    ) -> None:
        await self._run(
            ops.change_privileges(ops.SEQUENCES, grantee, privileges, sequences, revoke=True)
        )

    async def revoke_database(
        self,
        grantee: str,
        privileges: Sequence[DatabasePrivilege],
        databases: Sequence[str] | None = None,
    ) -> None:
        await self._run(ops.change_database_privileges(grantee, privileges, databases, revoke=True))

    async def revoke_default_privileges(
        self,
        grantee: str,
        privileges: Sequence[TablePrivilege] | Sequence[SequencePrivilege],
        *,
        owner: str,
        schemas: Sequence[str],
        objects: DefaultObjects | str | None = None,
    ) -> None:
        await self._run(
            ops.default_privileges(
                grantee, privileges, owner=owner, schemas=schemas, objects=objects, revoke=True
            )
        )
