"""What the `threads` commands share: one connection to the memory database, sizes, failing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import typer
from psycopg import AsyncConnection
from psycopg import sql as pgsql

from lakebase_memory.config import Settings
from lakebase_memory.database import check_login, open_target
from lakebase_memory.database.pool import CONNECTION_KWARGS
from lakebase_memory.errors import LakebaseMemoryError
from lakebase_memory.schema import ensure_schema, pending_migrations


@asynccontextmanager
async def memory_database(
    settings: Settings, *, write: bool, not_current: str
) -> AsyncIterator[AsyncConnection[Any]]:
    """One connection to the memory database, its search_path on the checkpoint schema.

    Commands that change data bring the tables up to date first, as the server does at
    start-up; read-only ones (and dry runs) change nothing and stop with `not_current` (what
    to do) when the tables are not current.
    """
    target = await asyncio.to_thread(open_target, settings)
    try:
        await check_login(target)  # a refused login says why
        conninfo = await target.login_conninfo()
        schema = settings.checkpoint_schema
        if write:
            await ensure_schema(conninfo, schema)
        async with await AsyncConnection.connect(
            conninfo, connect_timeout=settings.db_connect_timeout, **CONNECTION_KWARGS
        ) as conn:
            if schema != "public":
                await conn.execute(
                    pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(schema))
                )
            if not write and (pending := await pending_migrations(conn, schema)):
                raise LakebaseMemoryError(
                    f"the memory database's tables are not current ({', '.join(pending)}): "
                    + not_current
                )
            yield conn
    finally:
        await asyncio.to_thread(target.close)


def human_size(count: int) -> str:
    """1023 B, 1.5 KB, 12.0 MB: bytes in binary units."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)
