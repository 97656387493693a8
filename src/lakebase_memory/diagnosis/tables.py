"""Checks 6 and 7: the app's schemas and tables exist and are current (the long-term memory
store's included, with its vector table where an embedding model is configured), and the
logged-in role may use them. Existence comes from the catalog, which every role may read."""

from __future__ import annotations

import shlex

import psycopg
from psycopg.rows import DictRow

from lakebase_memory.diagnosis.context import Context
from lakebase_memory.diagnosis.result import CheckResult, failed, passed, skipped
from lakebase_memory.diagnosis.store import StoreFindings, store_findings, vectors_configured
from lakebase_memory.schema import missing_privileges, pending_migrations
from lakebase_memory.schema.privileges import (
    app_tables,
    required_schemas,
    required_tables,
    table_oid,
)

SCHEMA = "schema"
PRIVILEGES = "privileges"

Connection = psycopg.AsyncConnection[DictRow]


async def check_schema(ctx: Context) -> CheckResult:
    conn, settings = ctx.conn, ctx.settings
    assert conn is not None and settings is not None, "the login check runs first"
    checkpoint_schema = settings.checkpoint_schema
    tables = required_tables(checkpoint_schema, vectors=vectors_configured(settings))
    schemas = required_schemas(checkpoint_schema)
    missing = [f"schema {s}" for s in schemas if not await _schema_exists(conn, s)]
    missing += [f'table {s}."{t}"' for s, t in tables if await table_oid(conn, s, t) is None]
    ctx.missing_objects = missing
    store = StoreFindings()
    try:
        pending: list[str] | None = await pending_migrations(conn, checkpoint_schema)
        store = await store_findings(conn, settings)
        # pending_migrations has the store's own steps; the vector ones come from here.
        pending = list(dict.fromkeys([*pending, *store.pending]))
    except psycopg.errors.InsufficientPrivilege:
        pending = None  # the bookkeeping tables are not readable by this role: see privileges
    if missing or pending or store.problems:
        parts = [f"{len(missing)} object(s) missing"] if missing else []
        if pending:
            parts.append(f"{len(pending)} migration(s) pending")
        if store.problems:
            parts.append(f"{len(store.problems)} problem(s) with the memory store")
        fixes = [await _setup_fix(conn, schemas)] if missing or pending else []
        return failed(
            SCHEMA,
            f"the app's tables are not set up: {' and '.join(parts)}",
            " ".join([*fixes, *store.fixes]),
            tuple(
                missing
                + [f"pending migration {name}" for name in _ranges(pending or [])]
                + store.problems
            ),
        )
    where = ", ".join(schemas)
    if pending is None:
        return passed(
            SCHEMA,
            f"all {len(tables)} tables exist in {where}; their migration state is not readable "
            f"by {conn.info.user} (see privileges)",
        )
    return passed(SCHEMA, f"all {len(tables)} tables exist in {where}; migrations are current")


async def check_privileges(ctx: Context) -> CheckResult:
    conn, settings = ctx.conn, ctx.settings
    assert conn is not None and settings is not None, "the login check runs first"
    role = conn.info.user
    missing = await missing_privileges(conn, settings.checkpoint_schema)
    if missing:
        owner = await _tables_owner(conn, settings.checkpoint_schema)
        grant = f"lakebase-memory grant {shlex.quote(role)}"
        return failed(
            PRIVILEGES,
            f"role {role} lacks {len(missing)} privilege(s) the app needs",
            f"As the tables' owner ({owner}): `{grant}` (or `{grant} --sql` prints the SQL to "
            "run in a SQL editor).",
            tuple(missing),
        )
    if ctx.missing_objects:
        return skipped(
            PRIVILEGES,
            f"skipped: nothing to check on tables that do not exist yet (run the schema fix, "
            f"then doctor again); role {role} has every privilege on those that do",
        )
    return passed(PRIVILEGES, f"role {role} has every privilege the app needs")


async def _schema_exists(conn: Connection, schema: str) -> bool:
    cursor = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    return await cursor.fetchone() is not None


async def _setup_fix(conn: Connection, schemas: list[str]) -> str:
    owner = await _database_owner(conn)
    me = conn.info.user
    if await _may_create(conn, schemas):
        return (
            f"Run `lakebase-memory setup` (role {me} may create them), or start the app once: "
            "it creates them at start."
        )
    return (
        f"Run `lakebase-memory setup` as the database owner ({owner}), with that identity's "
        f"configuration: role {me} may not create them."
    )


async def _may_create(conn: Connection, schemas: list[str]) -> bool:
    cursor = await conn.execute(
        "SELECT bool_and(CASE WHEN n.oid IS NULL "
        "THEN has_database_privilege(current_database(), 'CREATE') "
        "ELSE has_schema_privilege(n.oid, 'CREATE') END) AS ok "
        "FROM unnest(%s::text[]) AS s(name) LEFT JOIN pg_namespace n ON n.nspname = s.name",
        (schemas,),
    )
    row = await cursor.fetchone()
    return bool(row and row["ok"])


async def _database_owner(conn: Connection) -> str:
    cursor = await conn.execute(
        "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database "
        "WHERE datname = current_database()"
    )
    row = await cursor.fetchone()
    return str(row["owner"]) if row else "the database owner"


async def _tables_owner(conn: Connection, checkpoint_schema: str) -> str:
    cursor = await conn.execute(
        "SELECT string_agg(DISTINCT pg_get_userbyid(c.relowner), ', ') AS owners "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        tuple(map(list, zip(*app_tables(checkpoint_schema), strict=True))),
    )
    row = await cursor.fetchone()
    return str(row["owners"]) if row and row["owners"] else await _database_owner(conn)


def _ranges(pending: list[str]) -> list[str]:
    """LangGraph's numbered migrations as one range (`checkpoint migrations v0..v9`)."""
    prefix = "checkpoint migration v"
    numbers = [int(name.removeprefix(prefix)) for name in pending if name.startswith(prefix)]
    others = [name for name in pending if not name.startswith(prefix)]
    if len(numbers) > 1:
        return [f"checkpoint migrations v{min(numbers)}..v{max(numbers)}", *others]
    return pending
