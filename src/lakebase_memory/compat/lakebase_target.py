"""What the drop-in classes connect to, and how they own their connection pool.

`LakebaseTarget` holds databricks-langchain's target keywords (`instance_name=`,
`autoscaling_endpoint=`, `project=` + `branch=`, `workspace_client=`, `schema=`, pool options)
and turns them into the project's own pieces: the connector that finds the host and the
identity and mints database credentials (`database.lakebase.LakebaseConnector`, through
`access.connection.lakebase_connector`, with the reference's argument checks and texts), a
pool whose every login takes a fresh credential (`access.connection`), and the project's
schema set-up (`schema.ensure_schema`). It is the one place the sync and async classes share:
they differ only in which pool they open and how they wait.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from lakebase_memory.access.connection import (
    LakebaseParams,
    async_pool_for,
    check_connection_args,
    lakebase_connector,
    sync_pool_for,
)
from lakebase_memory.config import Settings
from lakebase_memory.errors import DatabaseUnavailableError
from lakebase_memory.schema.migrations import ensure_schema

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from lakebase_memory.database.lakebase import LakebaseConnector

T = TypeVar("T")
SyncConfigure = Callable[[psycopg.Connection[Any]], None]  # psycopg_pool's `configure=`
AsyncConfigure = Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]]
DEFAULT_SCHEMA = "public"
# databricks-langchain's text when no target is given (these classes take no `pool=`).
NO_TARGET = (
    "Must provide either 'instance_name' (provisioned), 'autoscaling_endpoint', or 'branch' "
    "(autoscaling)."
)
# databricks-langchain's own pool options that this project's connector makes unnecessary:
# credentials are renewed once half their lifetime has passed, whatever that lifetime is.
IGNORED_POOL_OPTIONS = ("token_cache_duration_seconds",)


class LakebaseTarget:
    """A Lakebase target named by databricks-langchain's keywords; resolved on first need.

    `owner` names the class using it (for the pool's name and for messages).
    """

    def __init__(
        self,
        owner: str,
        *,
        instance_name: str | None,
        autoscaling_endpoint: str | None,
        project: str | None,
        branch: str | None,
        workspace_client: WorkspaceClient | None,
        schema: str | None,
        settings: Settings | None,
        pool_kwargs: dict[str, Any],
    ) -> None:
        params = LakebaseParams(instance_name, autoscaling_endpoint, project, branch)
        if not params.given:
            raise ValueError(NO_TARGET)
        check_connection_args(None, params)
        if schema is not None and not schema.strip():
            raise ValueError("'schema' cannot be empty.")
        self.owner = owner
        self.params = params
        self.schema = schema or DEFAULT_SCHEMA
        self._workspace_client = workspace_client
        self._settings = settings
        self._pool_kwargs = {
            "name": f"lakebase-memory {owner}",
            **{k: v for k, v in pool_kwargs.items() if k not in IGNORED_POOL_OPTIONS},
        }
        self._connector: LakebaseConnector | None = None
        self._resolving = threading.Lock()

    # --- where, and as whom -------------------------------------------------------------

    def connector(self) -> LakebaseConnector:
        """The resolved connector (blocking SDK calls the first time).

        Raises:
            LakebaseError: the target is not found or the SDK refused, with what to check.
        """
        with self._resolving:
            if self._connector is None:
                self._connector = lakebase_connector(
                    self.params, settings=self._settings, workspace_client=self._workspace_client
                )
            return self._connector

    def workspace(self) -> WorkspaceClient:
        """The Databricks client the connector uses (the one given, or the settings')."""
        return self.connector().workspace()

    # --- pools ----------------------------------------------------------------------------

    def _search_path(self) -> sql.Composed | None:
        if self.schema == DEFAULT_SCHEMA:
            return None
        # As databricks-langchain sets it: the schema's tables first, extensions from public.
        return sql.SQL("SET search_path TO {}, public").format(sql.Identifier(self.schema))

    def sync_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """An open pool; every login takes a fresh credential. Blocking."""
        options = dict(self._pool_kwargs)
        if (statement := self._search_path()) is not None:
            theirs: SyncConfigure | None = options.pop("configure", None)

            def configure(conn: psycopg.Connection[Any]) -> None:
                conn.execute(statement)
                if theirs is not None:
                    theirs(conn)

            options["configure"] = configure
        return sync_pool_for(connector=self.connector(), **options)

    async def async_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        """`sync_pool` for asyncio (the SDK calls run in a worker thread)."""
        options = dict(self._pool_kwargs)
        if (statement := self._search_path()) is not None:
            theirs: AsyncConfigure | None = options.pop("configure", None)

            async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
                await conn.execute(statement)
                if theirs is not None:
                    await theirs(conn)

            options["configure"] = configure
        connector = await asyncio.to_thread(self.connector)
        return await async_pool_for(connector=connector, **options)

    # --- schema set-up ---------------------------------------------------------------------

    async def setup(self, vector_dims: int | None = None) -> list[str]:
        """The project's schema set-up in `schema` (checkpoint, store and app tables; the
        store's vectors when `vector_dims` is given); one line per step done."""
        connector = await asyncio.to_thread(self.connector)
        conninfo = make_conninfo(connector.conninfo(), password=await connector.password())
        return await self._ensure(connector, conninfo, vector_dims)

    def setup_blocking(self, vector_dims: int | None = None) -> list[str]:
        """`setup` for synchronous callers."""
        connector = self.connector()
        conninfo = make_conninfo(connector.conninfo(), password=connector.password_blocking())
        return run_blocking(lambda: self._ensure(connector, conninfo, vector_dims))

    async def _ensure(
        self, connector: LakebaseConnector, conninfo: str, vector_dims: int | None
    ) -> list[str]:
        try:
            return await ensure_schema(conninfo, self.schema, vector_dims)
        except psycopg.OperationalError as error:  # the login itself
            raise DatabaseUnavailableError(connector.explain_login_failure(error)) from error


def run_blocking(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `make` returns to its end, from sync code: on a fresh event loop,
    in a worker thread when this thread already runs one (a notebook, an async server)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakebase-setup") as worker:
        return worker.submit(lambda: asyncio.run(make())).result()


# --- owning the pool ----------------------------------------------------------------------


class NotOpenPool(AsyncConnectionPool[Any]):
    """Stands for an async class's pool until it is opened (`async with`, `open()`)."""

    def __init__(self, owner: str) -> None:
        super().__init__("", open=False, name=f"{owner} (not open)")
        self.owner = owner

    def connection(self, timeout: float | None = None) -> Any:  # type: ignore[override]
        raise RuntimeError(
            f"{self.owner} is not open: use it as `async with {self.owner}(...) as x:` (or "
            "`await x.open()` first), which finds the Lakebase target and opens its pool."
        )


class SyncPoolOwner:
    """Closing the pool the sync classes open in their constructor; a context manager."""

    conn: Any

    def close(self) -> None:
        """Stop the store's TTL sweeper, if one runs, and close the pool (idempotent)."""
        if (stop_sweeper := getattr(self, "stop_ttl_sweeper", None)) is not None:
            stop_sweeper()
        if isinstance(self.conn, ConnectionPool):
            self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        parent = getattr(super(), "__exit__", None)
        if parent is not None:
            parent(exc_type, exc, traceback)
        self.close()


class AsyncPoolOwner:
    """Opening the pool of the async classes on `async with` (or `open()`), closing it after."""

    conn: Any
    _lakebase: LakebaseTarget

    def _not_open(self) -> NotOpenPool:
        self._opening = asyncio.Lock()
        return NotOpenPool(type(self).__name__)

    async def open(self) -> Self:
        """Resolve the target and open the pool (idempotent).

        Raises:
            LakebaseError: the target is not found, or Databricks refused the request.
            DatabaseUnavailableError: the login failed, with what to check.
        """
        async with self._opening:
            if isinstance(self.conn, NotOpenPool):
                self.conn = await self._lakebase.async_pool()
        return self

    async def close(self) -> None:
        """Close the pool if it was opened (idempotent)."""
        if isinstance(self.conn, AsyncConnectionPool) and not isinstance(self.conn, NotOpenPool):
            await self.conn.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        parent = getattr(super(), "__aexit__", None)
        if parent is not None:  # the store's: stops its TTL sweeper
            await parent(exc_type, exc, traceback)
        await self.close()
