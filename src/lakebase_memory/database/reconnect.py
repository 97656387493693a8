"""Connections the server dropped: recognising them, and running repeatable work again.

The pool checks a connection on checkout unless it was returned a moment ago (see `pool.py`),
and even a checked connection can be dropped before its next statement: a restarted server
or Lakebase compute, `idle_session_timeout`, `pg_terminate_backend`. The statement then fails
although the database is fine again. Work that is safe to repeat (reads, and writes that
leave the same rows when they run twice) runs again, up to once per connection of the pool:
each dropped connection is discarded, and for a second the app's pool checks every connection
it lends, also recently used ones (a server that drops one session has usually dropped them
all), so the second run almost always gets a live one.

Whatever else fails (a refused login, a pool timeout or a closed pool, a drop at every try)
is raised as it is, to be explained by the caller.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import psycopg
from psycopg_pool import (
    AsyncConnectionPool,
    ConnectionPool,
    PoolClosed,
    PoolTimeout,
    TooManyRequests,
)

from lakebase_memory.database.pool import check_every_checkout
from lakebase_memory.errors import first_line

T = TypeVar("T")
P = ParamSpec("P")
logger = logging.getLogger(__name__)

# admin_shutdown (pg_terminate_backend, a restart), crash_shutdown, idle_session_timeout.
DROPPED_SQLSTATES = frozenset({"57P01", "57P02", "57P05"})


# The pool's own refusals: no connection was lost, and running again would not help.
POOL_ERRORS = (PoolTimeout, PoolClosed, TooManyRequests)


def connection_lost(error: BaseException) -> bool:
    """The server ended the session (or the socket broke): not a refused statement."""
    if isinstance(error, POOL_ERRORS) or not isinstance(error, psycopg.OperationalError):
        return False
    state = error.sqlstate
    # No SQLSTATE: the client saw the socket close ("server closed the connection
    # unexpectedly", "consuming input failed"); class 08: connection exceptions, but for a
    # protocol violation, which would happen again.
    if state is None or state in DROPPED_SQLSTATES:
        return True
    return state.startswith("08") and state != "08P01"


async def again_if_dropped(
    work: Callable[[], Awaitable[T]], what: str, pool: AsyncConnectionPool[Any]
) -> T:
    """`work()`, run again while its connection was dropped, as often as `pool` has
    connections (each dropped one is discarded on return; a checked checkout replaces the
    rest at once). Only for work that is safe to repeat: a drop can come after a commit."""
    for _ in range(pool.max_size):
        try:
            return await work()
        except psycopg.OperationalError as error:
            _run_again_or_raise(error, what)
    return await work()


def again_if_dropped_sync(work: Callable[[], T], what: str, pool: ConnectionPool[Any]) -> T:
    """`again_if_dropped` for sync work."""
    for _ in range(pool.max_size):
        try:
            return work()
        except psycopg.OperationalError as error:
            _run_again_or_raise(error, what)
    return work()


def _run_again_or_raise(error: psycopg.OperationalError, what: str) -> None:
    """Re-raise an error that is not a drop; else say so and check the next checkouts."""
    if not connection_lost(error):
        raise error
    logger.warning(
        "%s: the database dropped the connection (%s); running it again", what, first_line(error)
    )
    check_every_checkout()


class OnPool(Protocol):
    pool: AsyncConnectionPool[Any]


S = TypeVar("S", bound=OnPool)


def repeatable(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Awaitable[T]]:
    """Mark a method working on `self.pool` as safe to repeat: it runs again after a drop."""

    @functools.wraps(method)
    async def run(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        work = functools.partial(method, self, *args, **kwargs)
        return await again_if_dropped(work, method.__qualname__, self.pool)

    return run
