"""What the `threads` commands share: one connection to the memory database, sizes, failing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import psycopg
import typer
from psycopg import AsyncConnection
from psycopg import sql as pgsql

from lakebase_memory.config import Settings
from lakebase_memory.database import open_target
from lakebase_memory.database.pool import CONNECTION_KWARGS, login
from lakebase_memory.errors import LakebaseMemoryError
from lakebase_memory.schema import ensure_schema, missing_privileges, pending_migrations


@asynccontextmanager
async def memory_database(
    settings: Settings, *, write: bool, not_current: str, migrate: bool = True
) -> AsyncIterator[AsyncConnection[Any]]:
    """One connection to the memory database, its search_path on the checkpoint schema.

    The command logs in once, and that login is the check: a refused one raises the same
    explanation as at start-up (on Lakebase each login uses a database credential and costs a
    TLS handshake, so the login is not checked on a connection of its own first).

    Commands that change data (`write`) bring the tables up to date first, as the server does
    at start-up, unless `migrate` is False; they check on that connection that the tables are
    current and that the role has the app's privileges. Only when not (a first run, an
    upgrade, a role without grants) does the schema set-up run, on a second connection, to
    create what is missing or say which privileges lack. Read-only commands (and dry runs),
    and writes with `migrate=False`, change nothing and stop with `not_current` (what to do)
    when the tables are not current.
    """
    migrate = write and migrate
    target = await asyncio.to_thread(open_target, settings)
    try:
        async with await login(target, **CONNECTION_KWARGS) as conn:
            schema = settings.checkpoint_schema
            if schema != "public":
                await conn.execute(
                    pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(schema))
                )
            try:
                pending: list[str] | None = await pending_migrations(conn, schema)
            except psycopg.errors.InsufficientPrivilege:
                if not migrate:
                    raise
                pending = None  # e.g. no USAGE on a schema: the set-up names the privilege
            if pending and not migrate:
                raise LakebaseMemoryError(
                    f"the memory database's tables are not current ({', '.join(pending)}): "
                    + not_current
                )
            if write and (pending is None or pending or await missing_privileges(conn, schema)):
                # Creates what is missing, or raises the error that says what to do.
                await ensure_schema(await target.login_conninfo(), schema)
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
