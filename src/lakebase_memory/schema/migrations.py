"""Create or upgrade everything the app needs, safely when many processes start at once.

All of it runs under one PostgreSQL advisory lock. Waiters poll `pg_try_advisory_lock` from an
idle session instead of blocking inside `pg_advisory_lock`: LangGraph's migrations use
`CREATE INDEX CONCURRENTLY`, which waits for every open snapshot, and a session blocked in a
lock call holds one, so the two would wait for each other.

Nothing is created when everything is current, so an app role without CREATE privileges
starts fine once an owner has run the set-up (`lakebase-memory setup`).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import sql
from psycopg.rows import DictRow

from lakebase_memory.database.pool import CONNECTION_KWARGS
from lakebase_memory.errors import DatabaseUnavailableError, SchemaSetupError
from lakebase_memory.schema.app_migrations import (
    BOOKKEEPING_SCHEMA,
    BOOKKEEPING_TABLE,
    CHAT_SCHEMA,
    MIGRATIONS,
)
from lakebase_memory.schema.privileges import missing_privileges
from lakebase_memory.schema.store_schema import ensure_store_tables, pending_store_steps

logger = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 7_061_043_411_552_113  # "lakebase-memory schema", any fixed bigint
LOCK_POLL_SECONDS = 0.1
LOCK_TIMEOUT_SECONDS = 300.0

CHECKPOINT_MIGRATIONS = AsyncPostgresSaver.MIGRATIONS

Connection = psycopg.AsyncConnection[DictRow]


async def ensure_schema(
    conninfo: str, checkpoint_schema: str = "public", vector_dims: int | None = None
) -> list[str]:
    """Bring the database up to date; return a line per object created or migration applied.

    `vector_dims`: the embeddings' dimensions when the memory store searches by meaning."""
    async with await psycopg.AsyncConnection.connect(conninfo, **CONNECTION_KWARGS) as conn:
        await _acquire_lock(conn)
        try:
            done: list[str] = []
            done += await _ensure_schema_exists(conn, checkpoint_schema)
            done += await _migrate_checkpoints(conn, checkpoint_schema)
            done += await ensure_store_tables(conn, checkpoint_schema, vector_dims)
            done += await _ensure_schema_exists(conn, BOOKKEEPING_SCHEMA)
            done += await _ensure_schema_exists(conn, CHAT_SCHEMA)
            done += await _migrate_app(conn)
        except psycopg.errors.InsufficientPrivilege as error:
            missing = await missing_privileges(conn, checkpoint_schema)
            if missing:
                raise SchemaSetupError(_lacks(conn.info.user, missing)) from error
            raise SchemaSetupError(
                f"The app's tables are missing or outdated and role '{conn.info.user}' may not "
                f"create them ({error}). Run `lakebase-memory setup` as the database owner, "
                "or grant this role CREATE on the schemas."
            ) from error
        except psycopg.Error as error:
            raise SchemaSetupError(f"Setting up the app's tables failed: {error}") from error
        finally:
            if not conn.closed:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        # An app role that did not create the tables needs privileges on them: say which
        # are missing now, rather than failing on the first request.
        missing = await missing_privileges(conn, checkpoint_schema)
        if missing:
            raise SchemaSetupError(_lacks(conn.info.user, missing))
        return done


def _lacks(role: str, missing: list[str]) -> str:
    return (
        f"Role '{role}' lacks privileges the app needs: {', '.join(missing)}. "
        f"Grant them as the tables' owner: `lakebase-memory grant {shlex.quote(role)}` "
        "(or its --sql output in a SQL editor; README: Access control)."
    )


async def pending_migrations(conn: Connection, checkpoint_schema: str = "public") -> list[str]:
    """Names of migrations not yet applied (read-only; for diagnosis)."""
    pending = [
        f"checkpoint migration v{v}"
        for v in range(await _checkpoint_version(conn, checkpoint_schema) + 1,
                       len(CHECKPOINT_MIGRATIONS))
    ]  # fmt: skip
    pending += await pending_store_steps(conn, checkpoint_schema, None)
    applied = await _applied_app_hashes(conn)
    pending += [m.name for m in MIGRATIONS if m.hash not in applied]
    return pending


async def _acquire_lock(conn: Connection) -> None:
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    while True:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (ADVISORY_LOCK_KEY,))
        row = await cursor.fetchone()
        if row and row["ok"]:
            return
        if time.monotonic() > deadline:
            raise DatabaseUnavailableError(
                f"Another process has held the schema set-up lock for {LOCK_TIMEOUT_SECONDS:.0f} s "
                f"(advisory lock {ADVISORY_LOCK_KEY}). Find it in pg_locks and stop it."
            )
        await asyncio.sleep(LOCK_POLL_SECONDS)


async def _ensure_schema_exists(conn: Connection, schema: str) -> list[str]:
    # Checked first: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
    # schema exists, which a least-privileged app role does not have.
    cursor = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    if await cursor.fetchone():
        return []
    await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    return [f"schema {schema}"]


async def _checkpoint_version(conn: Connection, schema: str) -> int:
    cursor = await conn.execute(
        "SELECT to_regclass(format('%%I.checkpoint_migrations', %s::text)) AS t", (schema,)
    )
    row = await cursor.fetchone()
    if not row or row["t"] is None:
        return -1
    cursor = await conn.execute(
        sql.SQL("SELECT max(v) AS v FROM {}.checkpoint_migrations").format(sql.Identifier(schema))
    )
    row = await cursor.fetchone()
    return -1 if not row or row["v"] is None else int(row["v"])


async def _migrate_checkpoints(conn: Connection, schema: str) -> list[str]:
    version = await _checkpoint_version(conn, schema)
    latest = len(CHECKPOINT_MIGRATIONS) - 1
    if version >= latest:
        return []
    # LangGraph's own set-up, so the tables and their bookkeeping are exactly the stock ones.
    await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    try:
        await AsyncPostgresSaver(conn).setup()
    finally:
        await conn.execute("RESET search_path")
    return [f"checkpoint tables in {schema} (LangGraph migrations v{version + 1}..v{latest})"]


async def _applied_app_hashes(conn: Connection) -> set[str]:
    cursor = await conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) AS t",
        (BOOKKEEPING_SCHEMA, BOOKKEEPING_TABLE),
    )
    row = await cursor.fetchone()
    if not row or row["t"] is None:
        return set()
    cursor = await conn.execute(
        sql.SQL("SELECT hash FROM {}").format(sql.Identifier(BOOKKEEPING_SCHEMA, BOOKKEEPING_TABLE))
    )
    return {r["hash"] for r in await cursor.fetchall()}


async def _migrate_app(conn: Connection) -> list[str]:
    applied = await _applied_app_hashes(conn)
    done: list[str] = []
    table = sql.Identifier(BOOKKEEPING_SCHEMA, BOOKKEEPING_TABLE)
    if not applied:
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} "
                "(id serial PRIMARY KEY, hash text NOT NULL, created_at bigint)"
            ).format(table)
        )
    for migration in MIGRATIONS:
        if migration.hash in applied:
            continue
        async with conn.transaction():
            await conn.execute(migration.sql.encode())
            await conn.execute(
                sql.SQL("INSERT INTO {} (hash, created_at) VALUES (%s, %s)").format(table),
                (migration.hash, int(time.time() * 1000)),
            )
        done.append(f"migration {migration.name}")
    return done
