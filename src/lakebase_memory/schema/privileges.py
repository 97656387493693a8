"""What the app's role must be allowed to do on the app's tables, and what it lacks."""

from __future__ import annotations

import psycopg
from psycopg.rows import DictRow

from lakebase_memory.schema.app_migrations import (
    BOOKKEEPING_SCHEMA,
    CHAT_SCHEMA,
    CHECKPOINT_TABLES,
)

# DELETE included: deleting a thread deletes its rows (the reference's grants forget it).
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
CHAT_TABLES = ("Chat", "Message", "Vote")


def required_tables(checkpoint_schema: str) -> list[tuple[str, str]]:
    return [
        *((checkpoint_schema, table) for table in CHECKPOINT_TABLES),
        *((CHAT_SCHEMA, table) for table in CHAT_TABLES),
        (BOOKKEEPING_SCHEMA, "__drizzle_migrations"),
    ]


async def missing_privileges(
    conn: psycopg.AsyncConnection[DictRow], checkpoint_schema: str = "public"
) -> list[str]:
    """Each privilege the connected role lacks, as `PRIVILEGE on schema.table` (or schema)."""
    missing: list[str] = []
    schemas = dict.fromkeys([checkpoint_schema, CHAT_SCHEMA, BOOKKEEPING_SCHEMA])
    for schema in schemas:
        cursor = await conn.execute(
            "SELECT has_schema_privilege(current_user, n.oid, 'USAGE') AS ok "
            "FROM pg_namespace n WHERE n.nspname = %s",
            (schema,),
        )
        row = await cursor.fetchone()
        if row is not None and not row["ok"]:  # a missing schema is set-up's business
            missing.append(f"USAGE on schema {schema}")
    for schema, table in required_tables(checkpoint_schema):
        if f"USAGE on schema {schema}" in missing or not await _exists(conn, schema, table):
            continue
        for privilege in TABLE_PRIVILEGES:
            cursor = await conn.execute(
                "SELECT has_table_privilege("
                "current_user, format('%%I.%%I', %s::text, %s::text), %s) AS ok",
                (schema, table, privilege),
            )
            row = await cursor.fetchone()
            if not row or not row["ok"]:
                missing.append(f'{privilege} on {schema}."{table}"')
    return missing


async def _exists(conn: psycopg.AsyncConnection[DictRow], schema: str, table: str) -> bool:
    cursor = await conn.execute(
        "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL AS ok",
        (schema, table),
    )
    row = await cursor.fetchone()
    return bool(row and row["ok"])
