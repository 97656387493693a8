"""One connection for one unit of work, from a pool or a single shared connection.

The savers, the thread store and the transfers accept either, as LangGraph's savers do, and
each runs its own transactions, so every connection they are given must be in autocommit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool

AsyncSource = AsyncConnection[Any] | AsyncConnectionPool[Any]
SyncSource = Connection[Any] | ConnectionPool[Any]


@asynccontextmanager
async def borrow(
    source: AsyncSource, user: str, lock: asyncio.Lock | None = None
) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection, or `source` itself (under `lock`: one user at a time).

    Raises:
        ValueError: the connection is not in autocommit; `user` names who needs it.
    """
    if isinstance(source, AsyncConnectionPool):
        async with source.connection() as conn:
            require_autocommit(conn, user)
            yield conn
    else:
        async with lock or nullcontext():
            require_autocommit(source, user)
            yield source


@contextmanager
def borrow_sync(
    source: SyncSource, user: str, lock: threading.Lock | None = None
) -> Iterator[Connection[Any]]:
    """`borrow` for sync connections and pools."""
    if isinstance(source, ConnectionPool):
        with source.connection() as conn:
            require_autocommit(conn, user)
            yield conn
    else:
        with lock or nullcontext():
            require_autocommit(source, user)
            yield source


def require_autocommit(conn: Connection[Any] | AsyncConnection[Any], user: str) -> None:
    if not conn.autocommit:
        raise ValueError(
            f"{user} needs connections opened with autocommit=True (it runs its own "
            "transactions): connect(..., autocommit=True), or a pool made with "
            "kwargs={'autocommit': True}"
        )
