"""`AsyncLakebaseClient`: `LakebaseClient`'s API for asyncio (`await client.grant_schema(...)`).

Its methods are `LakebaseClient`'s (`api.PrivilegeApi`), each returning an awaitable: only the
driver (`_run`) differs.
The constructor only validates: the pool opens (and, on Lakebase, the instance is resolved)
on `async with`, `await client.open()`, or the first call.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lakebase_memory.access import operations as ops
from lakebase_memory.access.api import PrivilegeApi
from lakebase_memory.access.connection import (
    AsyncPool,
    LakebaseParams,
    async_pool_for,
    lakebase_connector,
)

if TYPE_CHECKING:
    from lakebase_memory.database.targets import DatabaseTarget

T = TypeVar("T")


class AsyncLakebaseClient(PrivilegeApi):
    """The async client: same constructor forms as `LakebaseClient` (with an
    `AsyncConnectionPool`-like `pool`), same methods, awaited. An async context manager."""

    def _setup(
        self,
        pool: AsyncPool | None,
        params: LakebaseParams,
        pool_kwargs: dict[str, Any],
        target: DatabaseTarget | None = None,
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
        client._setup(None, LakebaseParams(), pool_kwargs, target)
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
        step = ops.start(program)
        while isinstance(step, ops.Query):
            step = ops.advance(program, await self._attempt(step))
        return step.value  # type: ignore[no-any-return]

    async def _attempt(self, query: ops.Query) -> ops.Rows | psycopg.Error:
        try:
            return await self._query(query)
        except psycopg.Error as error:
            return error

    async def _query(self, query: ops.Query) -> ops.Rows:
        assert self._pool is not None
        async with (
            self._pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(query.statement, query.params)  # type: ignore[arg-type]
            return await cursor.fetchall() if cursor.description else None
