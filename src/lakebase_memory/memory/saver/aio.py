"""`AsyncLinearPostgresSaver`: the linear saver on an `AsyncConnection` or `AsyncConnectionPool`.

No lock spans the saver: with a pool, independent threads run in parallel up to the pool's
size, and writers of the same thread queue on that thread's row lock in the database. Only
a single shared connection is guarded, since it can run one transaction at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from lakebase_memory.database.borrow import borrow
from lakebase_memory.database.reconnect import again_if_dropped
from lakebase_memory.memory.saver import sql
from lakebase_memory.memory.saver.api import PLAIN, Call, LinearSaverApi, Make
from lakebase_memory.memory.saver.ops import (
    BEGIN,
    DEFAULT_LEASE_SECONDS,
    AfterCommit,
    Op,
    new_turn_id,
    thread_id_of,
    with_turn,
)

T = TypeVar("T")
logger = logging.getLogger(__name__)
AsyncConn = AsyncConnection[Any] | AsyncConnectionPool[Any]


async def adrive(conn: AsyncConnection[Any], cur: AsyncCursor[DictRow], op: Op[T]) -> T:
    """Run an operation's queries in order, sending each one's rows back.

    Statements run in autocommit until the operation yields `BEGIN`; from there on, in one
    transaction, committed when the operation returns and rolled back if it raises.
    """
    async with AsyncExitStack() as stack:
        try:
            query = next(op)
            while True:
                rows: list[dict[str, Any]] = []
                if query is BEGIN:
                    await stack.enter_async_context(conn.transaction())
                elif query.many:
                    await cur.executemany(query.sql, query.params or [])  # type: ignore[arg-type]
                else:
                    await cur.execute(query.sql, query.params)
                    if query.fetch:
                        rows = await cur.fetchall()
                query = op.send(rows)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


class AsyncLinearPostgresSaver(LinearSaverApi):
    """The async twin of `LinearPostgresSaver` (same storage, same decisions).

    Args:
        conn: an `AsyncConnection` with `autocommit=True`, or a pool of such connections
            (the app's pool: concurrency is bounded by the pool alone).
        serde: the serializer for channel values and writes.
        cache_threads: how many threads' decoded messages to keep in memory (0: none).

    The sync methods work from other threads than the event loop's, like the stock
    `AsyncPostgresSaver`'s; on the loop's thread use the `a`-methods.
    """

    _single = AsyncConnection
    _lock = asyncio.Lock

    def __init__(self, conn: AsyncConn, **options: Any) -> None:
        super().__init__(conn, **options)
        # Leases whose release failed (the database was away), retried in the background.
        self._unreleased: dict[str, str] = {}  # thread id -> turn id
        self._releasing: set[asyncio.Task[None]] = set()
        self.loop = asyncio.get_running_loop()

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls, conn_string: str, **options: Any
    ) -> AsyncIterator[AsyncLinearPostgresSaver]:
        """A saver on one new connection, closed when the context ends; `options` are the
        constructor's (`serde`, `cache_threads`)."""
        async with await AsyncConnection.connect(
            conn_string, autocommit=True, prepare_threshold=0, row_factory=dict_row
        ) as conn:
            yield cls(conn, **options)

    async def setup(self) -> None:
        """Create or upgrade the stock checkpoint tables and the message log tables."""
        async with self._connection() as conn:
            await AsyncPostgresSaver(conn).setup()  # type: ignore[arg-type]
            await conn.execute(sql.CREATE_CHAT_SCHEMA)
            await conn.execute(sql.LOG_TABLES_DDL.encode(), prepare=False)

    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        return borrow(self.conn, type(self).__name__, self._conn_lock)

    async def _run(self, make: Make[T], *, repeatable: bool = True) -> T:
        """Run the operation `make` builds; on a pool, again if the server dropped the
        connection under it (`repeatable`: every operation but a copy leaves the same rows
        when it runs twice, see `BaseLinearSaver`)."""

        async def attempt() -> T:
            after: AfterCommit = []
            async with (
                self._connection() as conn,
                conn.cursor(binary=True, row_factory=dict_row) as cur,
            ):
                result = await adrive(conn, cur, make(after))
            for step in after:  # only once committed
                step()
            return result

        if repeatable and isinstance(self.conn, AsyncConnectionPool):
            return await again_if_dropped(attempt, type(self).__name__, self.conn)
        return await attempt()

    async def _acall(self, make: Make[T], how: Call = PLAIN) -> T:  # type: ignore[override]
        """The native driver (see `api.LinearSaverApi`)."""
        if how.after is not None and (landing := self._saving.get(how.after)) is not None:
            await landing.wait()
        if how.saving is None:
            return await self._run(make, repeatable=how.repeatable)
        saved = self._saving[how.saving] = asyncio.Event()
        try:
            return await self._run(make, repeatable=how.repeatable)
        finally:
            saved.set()
            if self._saving.get(how.saving) is saved:
                del self._saving[how.saving]

    def _call(self, make: Make[T], how: Call = PLAIN) -> T:
        """From another thread than the event loop's (see `_from_thread`)."""
        return self._from_thread(self._acall(make, how))

    # -- one turn at a time per thread ------------------------------------------------------

    async def aacquire_turn(
        self,
        thread_id: str,
        *,
        user_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> str:
        """Take the thread's turn lease; returns its id. Creates the thread's row if new.

        Raises:
            ThreadBusyError: another turn holds an unexpired lease on the thread.
        """
        stale = self._unreleased.get(thread_id)
        if stale is not None:  # this process's own ended turn: free the thread first
            await self._release_unreleased(thread_id, stale)
        turn_id = new_turn_id()
        return await self._run(
            lambda _: self._op_acquire_turn(thread_id, user_id, lease_seconds, turn_id)
        )

    async def arenew_turn(
        self, thread_id: str, turn_id: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> bool:
        """Extend the lease; False if it is no longer held (expired and taken, or deleted)."""
        return await self._run(lambda _: self._op_renew_turn(thread_id, turn_id, lease_seconds))

    async def arelease_turn(self, thread_id: str, turn_id: str) -> None:
        await self._run(lambda _: self._op_release_turn(thread_id, turn_id))

    async def arelease_turn_soon(
        self, thread_id: str, turn_id: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> None:
        """Release the lease now, or, if the database cannot be reached (a restart, a
        crash), as soon as it can: retried in the background until the lease would have
        ended anyway, so that the thread is free again seconds after the database is back
        rather than when its lease expires. Never raises."""
        try:
            await self.arelease_turn(thread_id, turn_id)
            return
        except Exception as error:
            logger.warning("could not release the turn lease on %s (retrying): %s",
                           thread_id, error)  # fmt: skip
        self._unreleased[thread_id] = turn_id
        task = asyncio.ensure_future(self._release_later(thread_id, turn_id, lease_seconds))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release_later(self, thread_id: str, turn_id: str, lease_seconds: float) -> None:
        deadline = self.loop.time() + lease_seconds
        delay = 0.2
        while self.loop.time() + delay < deadline and thread_id in self._unreleased:
            await asyncio.sleep(delay)
            if await self._release_unreleased(thread_id, turn_id):
                return
            delay = min(delay * 2, 2.0)
        if self._unreleased.get(thread_id) == turn_id:
            del self._unreleased[thread_id]  # expired by now: nothing holds the thread

    async def _release_unreleased(self, thread_id: str, turn_id: str) -> bool:
        try:
            await self.arelease_turn(thread_id, turn_id)
        except Exception:
            return False
        if self._unreleased.get(thread_id) == turn_id:
            del self._unreleased[thread_id]
        return True

    @asynccontextmanager
    async def aturn(
        self,
        config: RunnableConfig,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> AsyncIterator[RunnableConfig]:
        """Hold the thread's turn lease while the block runs; yields the config to run with.

        Every checkpoint and write made with that config checks the lease in the same
        statement: a second turn on the thread gets `ThreadBusyError` instead of interleaving,
        and a write arriving after the thread was deleted raises `StaleTurnError` instead of
        bringing it back. The lease is renewed in the background and released at the end.

            async with saver.aturn({"configurable": {"thread_id": "t1"}}) as config:
                await graph.ainvoke(inputs, config)
        """
        thread_id = thread_id_of(config)
        user_id = config.get("configurable", {}).get("user_id")
        turn_id = await self.aacquire_turn(thread_id, user_id=user_id, lease_seconds=lease_seconds)
        async with self.aheld_turn(thread_id, turn_id, lease_seconds=lease_seconds):
            yield with_turn(config, turn_id, user_id)

    @asynccontextmanager
    async def aheld_turn(
        self, thread_id: str, turn_id: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> AsyncIterator[None]:
        """Renew an acquired lease in the background while the block runs, then release it."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(lease_seconds / 3)
                try:
                    held = await self.arenew_turn(thread_id, turn_id, lease_seconds=lease_seconds)
                except Exception as error:  # a blip: two more tries before the lease ends
                    logger.warning("could not renew the turn lease on %s: %s", thread_id, error)
                    continue
                if not held:
                    return  # lost: the turn's next write says so

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            await self.arelease_turn_soon(thread_id, turn_id, lease_seconds=lease_seconds)

    # -- the sync interface, from other threads ---------------------------------------------

    def _from_thread(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            coro.close()
            raise asyncio.InvalidStateError(
                "sync calls to AsyncLinearPostgresSaver would block its event loop: on the "
                "loop's thread use the async methods (`await saver.aget_tuple(...)`, "
                "`await graph.ainvoke(...)`)"
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
