"""`LinearPostgresSaver`: the linear saver on a psycopg `Connection` or `ConnectionPool`."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg import Connection, Cursor
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from lakebase_memory.database.borrow import borrow_sync
from lakebase_memory.database.reconnect import again_if_dropped_sync
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
SyncConn = Connection[Any] | ConnectionPool[Any]


def drive(conn: Connection[Any], cur: Cursor[DictRow], op: Op[T]) -> T:
    """Run an operation's queries in order, sending each one's rows back.

    Statements run in autocommit until the operation yields `BEGIN`; from there on, in one
    transaction, committed when the operation returns and rolled back if it raises.
    """
    with ExitStack() as stack:
        try:
            query = next(op)
            while True:
                rows: list[dict[str, Any]] = []
                if query is BEGIN:
                    stack.enter_context(conn.transaction())
                elif query.many:
                    cur.executemany(query.sql, query.params or [])  # type: ignore[arg-type]
                else:
                    cur.execute(query.sql, query.params)
                    if query.fetch:
                        rows = cur.fetchall()
                query = op.send(rows)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


class LinearPostgresSaver(LinearSaverApi):
    """A LangGraph checkpointer whose storage grows with the conversation, not its square.

    Same tables and API as LangGraph's `PostgresSaver`, plus `copy_thread`, `prune` and
    `delete_for_runs`; a channel holding a list of messages is kept in a per-thread message
    log, each message once (see `lakebase_memory.memory.saver`).

    Args:
        conn: a connection with `autocommit=True`, or a pool of such connections. With a pool,
            calls from several threads run in parallel, one pooled connection each; a single
            connection is used by one call at a time.
        serde: the serializer for channel values and writes (LangGraph's default otherwise).
        cache_threads: how many threads' decoded messages to keep in memory (0: none).
    """

    _single = Connection
    _lock = threading.Lock

    def __init__(self, conn: SyncConn, **options: Any) -> None:
        super().__init__(conn, **options)

    @classmethod
    @contextmanager
    def from_conn_string(cls, conn_string: str, **options: Any) -> Iterator[LinearPostgresSaver]:
        """A saver on one new connection, closed when the context ends; `options` are the
        constructor's (`serde`, `cache_threads`)."""
        with Connection.connect(
            conn_string, autocommit=True, prepare_threshold=0, row_factory=dict_row
        ) as conn:
            yield cls(conn, **options)

    def setup(self) -> None:
        """Create or upgrade the stock checkpoint tables and the message log tables.

        The app runs the same migrations in `schema.ensure_schema`; library users call this
        once, with a role that may create tables.
        """
        with self._connection() as conn:
            PostgresSaver(conn).setup()  # type: ignore[arg-type]
            conn.execute(sql.CREATE_CHAT_SCHEMA)
            conn.execute(sql.LOG_TABLES_DDL.encode(), prepare=False)

    def _connection(self) -> AbstractContextManager[Connection[Any]]:
        return borrow_sync(self.conn, type(self).__name__, self._conn_lock)

    def _run(self, make: Make[T], *, repeatable: bool = True) -> T:
        """Run the operation `make` builds; on a pool, again after a dropped connection
        (see `AsyncLinearPostgresSaver._run`)."""

        def attempt() -> T:
            after: AfterCommit = []
            with (
                self._connection() as conn,
                conn.cursor(binary=True, row_factory=dict_row) as cur,
            ):
                result = drive(conn, cur, make(after))
            for step in after:  # only once committed
                step()
            return result

        if repeatable and isinstance(self.conn, ConnectionPool):
            return again_if_dropped_sync(attempt, type(self).__name__, self.conn)
        return attempt()

    def _call(self, make: Make[T], how: Call = PLAIN) -> T:
        """The native driver (see `api.LinearSaverApi`)."""
        if how.after is not None and (landing := self._saving.get(how.after)) is not None:
            landing.wait()
        if how.saving is None:
            return self._run(make, repeatable=how.repeatable)
        saved = self._saving[how.saving] = threading.Event()
        try:
            return self._run(make, repeatable=how.repeatable)
        finally:
            saved.set()
            if self._saving.get(how.saving) is saved:
                del self._saving[how.saving]

    def _acall(self, make: Make[T], how: Call = PLAIN) -> Awaitable[T]:
        """For async callers (and the conformance suite, which is async only): the sync
        driver in a worker thread."""
        return asyncio.to_thread(self._call, make, how)

    # -- one turn at a time per thread ------------------------------------------------------

    def acquire_turn(
        self,
        thread_id: str,
        *,
        user_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> str:
        """Take the thread's turn lease (see `AsyncLinearPostgresSaver.aturn`)."""
        turn_id = new_turn_id()
        return self._run(
            lambda _: self._op_acquire_turn(thread_id, user_id, lease_seconds, turn_id)
        )

    def renew_turn(
        self, thread_id: str, turn_id: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> bool:
        return self._run(lambda _: self._op_renew_turn(thread_id, turn_id, lease_seconds))

    def release_turn(self, thread_id: str, turn_id: str) -> None:
        self._run(lambda _: self._op_release_turn(thread_id, turn_id))

    @contextmanager
    def turn(
        self, config: RunnableConfig, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> Iterator[RunnableConfig]:
        """Hold the thread's turn lease while the block runs (see `aturn`); a timer thread
        renews it."""
        thread_id = thread_id_of(config)
        user_id = config.get("configurable", {}).get("user_id")
        turn_id = self.acquire_turn(thread_id, user_id=user_id, lease_seconds=lease_seconds)
        done = threading.Event()

        def renew() -> None:
            while not done.wait(lease_seconds / 3):
                try:
                    held = self.renew_turn(thread_id, turn_id, lease_seconds=lease_seconds)
                except Exception as error:  # a blip: two more tries before the lease ends
                    logger.warning("could not renew the turn lease on %s: %s", thread_id, error)
                    continue
                if not held:
                    return

        renewer = threading.Thread(target=renew, name=f"turn-lease-{thread_id}", daemon=True)
        renewer.start()
        try:
            yield with_turn(config, turn_id, user_id)
        finally:
            done.set()
            renewer.join()
            self.release_turn(thread_id, turn_id)
