"""Connections the server dropped: recognising them, and running repeatable work once more.

The pool checks a connection on checkout unless it was returned a moment ago (see `pool.py`),
and even a checked connection can be dropped before its next statement: a restarted server
or Lakebase compute, `idle_session_timeout`, `pg_terminate_backend`. The statement then fails
although the database is fine again. Work that is safe to repeat (reads, and writes that
leave the same rows when they run twice) runs once more, after the pool has checked its idle
connections: a server that drops one session has usually dropped them all, and each of them
would otherwise fail one more request.

Whatever else fails (a refused login, a pool timeout, a second drop in a row) is raised as it
is, to be explained by the caller.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from lakebase_memory.errors import first_line

T = TypeVar("T")
P = ParamSpec("P")
logger = logging.getLogger(__name__)

# admin_shutdown (pg_terminate_backend, a restart), crash_shutdown, idle_session_timeout.
DROPPED_SQLSTATES = frozenset({"57P01", "57P02", "57P05"})


def connection_lost(error: BaseException) -> bool:
    """The server ended the session (or the socket broke): not a refused statement."""
    if isinstance(error, PoolTimeout) or not isinstance(error, psycopg.OperationalError):
        return False
    state = error.sqlstate
    # No SQLSTATE: the client saw the socket close ("server closed the connection
    # unexpectedly", "consuming input failed"); class 08: connection exceptions.
    return state is None or state.startswith("08") or state in DROPPED_SQLSTATES


async def again_if_dropped(
    pool: AsyncConnectionPool[Any], work: Callable[[], Awaitable[T]], what: str
) -> T:
    """`work()`, and once more on fresh connections if the first run's connection was dropped.

    Only for work that is safe to repeat: a drop can come after the server committed.
    """
    try:
        return await work()
    except psycopg.OperationalError as error:
        if not connection_lost(error):
            raise
        _log_drop(what, error)
    await pool.check()
    return await work()


def again_if_dropped_sync(pool: ConnectionPool[Any], work: Callable[[], T], what: str) -> T:
    """`again_if_dropped` for sync pools."""
    try:
        return work()
    except psycopg.OperationalError as error:
        if not connection_lost(error):
            raise
        _log_drop(what, error)
    pool.check()
    return work()


def _log_drop(what: str, error: BaseException) -> None:
    logger.warning(
        "%s: the database dropped the connection (%s); running it again on a checked one",
        what,
        first_line(error),
    )


class HasPool(Protocol):
    @property
    def pool(self) -> AsyncConnectionPool[Any]: ...


S = TypeVar("S", bound=HasPool)


def repeatable(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Awaitable[T]]:
    """Mark a method on the app's pool as safe to repeat: it runs again after a drop."""

    @functools.wraps(method)
    async def run(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        return await again_if_dropped(
            self.pool, lambda: method(self, *args, **kwargs), method.__qualname__
        )

    return run
