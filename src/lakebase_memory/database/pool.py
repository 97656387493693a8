"""The process's one connection pool, and the login check that runs before it opens."""

from __future__ import annotations

import logging
import select
import time
import weakref
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from lakebase_memory.config import Settings
from lakebase_memory.database.lakebase import LIFETIME_SHARE
from lakebase_memory.database.sizing import ServerFacts
from lakebase_memory.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from lakebase_memory.database.targets import DatabaseTarget

logger = logging.getLogger(__name__)

Pool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]

# LangGraph's saver needs autocommit and dict rows on every connection it is given.
CONNECTION_KWARGS: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}
APPLICATION_NAME = "lakebase-memory"  # how the pool's sessions show in pg_stat_activity
# Checking a connection on checkout costs a round trip, as much as a checkpoint read. One
# that was returned a moment ago (back-to-back operations of one turn) is trusted unless its
# socket has something to read: a server that ended the session has sent a message or closed
# it, which a zero-timeout select() sees without a round trip. Kept short, so a connection
# killed just after it was returned is still caught by the real check almost always.
RECENTLY_USED_SECONDS = 0.02
# After a statement met a dropped connection (`reconnect.py`), every checkout is checked for
# this long: the others were most likely dropped at the same moment.
CHECK_ALL_SECONDS = 1.0
_returned_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
_check_all_until = [0.0]


def check_every_checkout(seconds: float = CHECK_ALL_SECONDS) -> None:
    """Trust no recently used connection for `seconds`: check each one the pool lends."""
    _check_all_until[0] = time.monotonic() + seconds


async def _note_return(conn: psycopg.AsyncConnection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


async def _check_if_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    """Check a connection that sat idle; one killed by the server meanwhile is replaced."""
    now = time.monotonic()
    idle = now - _returned_at.get(conn, 0.0)
    if idle > RECENTLY_USED_SECONDS or now < _check_all_until[0] or _socket_has_input(conn):
        await AsyncConnectionPool.check_connection(conn)


def _socket_has_input(conn: psycopg.AsyncConnection[Any]) -> bool:
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        return True  # closed or unusable: let the real check say so
    return bool(readable)


async def login(target: DatabaseTarget, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
    """One connection to `target`, outside any pool; a refused login surfaces its real cause.

    A pool would retry in the background and report only a timeout. `kwargs` go to
    `AsyncConnection.connect` (e.g. `autocommit`, `row_factory`). The caller closes it. One
    login is one credential use and one TLS handshake on Lakebase: a command that needs the
    database opens it once, with this, rather than checking the login first and connecting
    again.

    Raises:
        DatabaseUnavailableError: the login failed, with what to check (`target.explain`).
    """
    try:
        conninfo = await target.login_conninfo()
        return await psycopg.AsyncConnection.connect(conninfo, **kwargs)
    except psycopg.OperationalError as error:
        raise DatabaseUnavailableError(target.explain(error)) from error


# One round trip for everything start-up needs to know (PostgreSQL 16 adds
# reserved_connections; `current_setting(..., true)` is NULL on older servers).
_FACTS_QUERY = """
SELECT current_setting('server_version'),
       current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true), '0')::int
"""


async def probe_server(target: DatabaseTarget) -> ServerFacts:
    """Log in once, outside any pool, so that a refused login surfaces its real cause now,
    and read the server's version and connection limit (`sizing.py`).

    For a check only: work that needs a connection anyway takes the one `login` gives,
    instead of logging in twice.
    """
    try:
        async with await login(target, autocommit=True) as conn:
            cursor = await conn.execute(_FACTS_QUERY)
            row = await cursor.fetchone()
    except psycopg.OperationalError as error:
        raise DatabaseUnavailableError(target.explain(error)) from error
    assert row is not None
    return ServerFacts(str(row[0]), int(row[1]), int(row[2]))


async def check_login(target: DatabaseTarget) -> str:
    """`probe_server`, for the server version only."""
    return (await probe_server(target)).version


async def open_pool(
    target: DatabaseTarget, settings: Settings, *, search_path: str, max_size: int | None = None
) -> Pool:
    """Open the pool at start-up: health-checked connections with a bounded lifetime, at most
    `max_size` of them (default DB_POOL_MAX_SIZE; the server sizes it with `sizing.py`)."""
    max_size = max_size or settings.db_pool_max_size

    async def configure(conn: psycopg.AsyncConnection[DictRow]) -> None:
        if search_path != "public":
            # public second: pgvector's type lives there (schema/store_schema.py).
            await conn.execute(
                sql.SQL("SET search_path TO {}, public").format(sql.Identifier(search_path))
            )

    conninfo = target.conninfo
    if "application_name" not in conninfo_to_dict(conninfo):
        conninfo = make_conninfo(conninfo, application_name=APPLICATION_NAME)
    max_lifetime = settings.db_pool_max_lifetime
    kwargs: Any = CONNECTION_KWARGS
    if target.lakebase is not None:
        # Each new connection logs in with a credential from the connector (cached, renewed
        # well before it expires), and no connection outlives the credential's lifetime.
        password = target.lakebase.password

        async def kwargs() -> dict[str, Any]:
            return {**CONNECTION_KWARGS, "password": await password()}

        lifetime = target.lakebase.token_lifetime()
        if lifetime:
            max_lifetime = min(max_lifetime, max(1.0, lifetime * LIFETIME_SHARE))
    pool: Pool = AsyncConnectionPool(
        conninfo,
        kwargs=kwargs,
        connection_class=psycopg.AsyncConnection[DictRow],
        min_size=min(settings.db_pool_min_size, max_size),
        max_size=max_size,
        timeout=settings.db_pool_timeout,
        max_lifetime=max_lifetime,
        max_idle=settings.db_pool_max_idle,
        # A connection killed by the server while idle is found and replaced on checkout.
        check=_check_if_idle,
        reset=_note_return,
        configure=configure,
        name="lakebase-memory",
        open=False,
    )
    await pool.open(wait=True, timeout=settings.db_pool_timeout)
    return pool
