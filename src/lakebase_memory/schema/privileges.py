"""What the app's role must be allowed to do, and what it lacks.

The single source of truth for "what the app needs": start-up reports what is missing from it,
`lakebase-memory grant` grants exactly it (plus default privileges, so that tables the owner
creates later are covered), and `lakebase-memory doctor` checks it.

- CONNECT on the database;
- USAGE on the app's schemas (the checkpoint schema, `ai_chatbot`, `drizzle`);
- SELECT, INSERT, UPDATE, DELETE on each of the app's tables (DELETE: deleting a thread deletes
  its rows, which the reference's grants forget);
- USAGE on the sequences behind the app's serial columns (`drizzle.__drizzle_migrations.id`):
  `nextval()` needs USAGE (or UPDATE); the app never reads or sets a sequence directly.

CREATE is not needed once an owner has created the tables (`lakebase-memory setup`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import LiteralString

import psycopg
from psycopg.rows import DictRow

from lakebase_memory.schema.app_migrations import (
    BOOKKEEPING_SCHEMA,
    BOOKKEEPING_TABLE,
    CHAT_SCHEMA,
    CHECKPOINT_TABLES,
    MESSAGE_LOG_TABLES,
)

DATABASE_PRIVILEGES = ("CONNECT",)
SCHEMA_PRIVILEGES = ("USAGE",)
# DELETE included: deleting a thread deletes its rows (the reference's grants forget it).
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
SEQUENCE_PRIVILEGES = ("USAGE",)
CHAT_TABLES = ("Chat", "Message", "Vote")


@dataclass(frozen=True)
class SerialColumn:
    """A column whose default draws from a sequence (found with pg_get_serial_sequence)."""

    schema: str
    table: str
    column: str


SERIAL_COLUMNS = (SerialColumn(BOOKKEEPING_SCHEMA, BOOKKEEPING_TABLE, "id"),)


def required_schemas(checkpoint_schema: str) -> list[str]:
    return list(dict.fromkeys([checkpoint_schema, CHAT_SCHEMA, BOOKKEEPING_SCHEMA]))


def required_tables(checkpoint_schema: str) -> list[tuple[str, str]]:
    return [
        *((checkpoint_schema, table) for table in CHECKPOINT_TABLES),
        *((CHAT_SCHEMA, table) for table in CHAT_TABLES),
        # The linear saver's message log: in the chat schema, where the seed's grants reach.
        *((CHAT_SCHEMA, table) for table in MESSAGE_LOG_TABLES),
        (BOOKKEEPING_SCHEMA, BOOKKEEPING_TABLE),
    ]


def sequence_schemas() -> list[str]:
    """Schemas where the app's sequences live (default privileges on sequences go there)."""
    return list(dict.fromkeys(column.schema for column in SERIAL_COLUMNS))


Connection = psycopg.AsyncConnection[DictRow]


async def missing_privileges(
    conn: Connection, checkpoint_schema: str = "public", role: str | None = None
) -> list[str]:
    """Each privilege `role` (default: the connected role) lacks, in the order they matter:
    `CONNECT on database d`, `USAGE on schema s`, `PRIVILEGE on s."t"`,
    `USAGE on sequence s."q"`. Missing schemas and tables are not reported: creating them is
    set-up's business."""
    who = role if role is not None else await _current_user(conn)
    missing: list[str] = []
    for privilege in DATABASE_PRIVILEGES:
        row = await _one(
            conn,
            "SELECT current_database() AS db, "
            "has_database_privilege(%s::name, current_database(), %s) AS ok",
            (who, privilege),
        )
        if not row["ok"]:
            missing.append(f"{privilege} on database {row['db']}")
    for schema in required_schemas(checkpoint_schema):
        for privilege in SCHEMA_PRIVILEGES:
            cursor = await conn.execute(
                "SELECT has_schema_privilege(%s::name, n.oid, %s) AS ok "
                "FROM pg_namespace n WHERE n.nspname = %s",
                (who, privilege, schema),
            )
            found = await cursor.fetchone()
            if found is not None and not found["ok"]:
                missing.append(f"{privilege} on schema {schema}")
    unusable = {m.removeprefix("USAGE on schema ") for m in missing}
    tables = [(s, t) for s, t in required_tables(checkpoint_schema) if s not in unusable]
    # One query for every table and privilege (start-up runs this; on Lakebase each round
    # trip counts), in the order of `required_tables`, then of `TABLE_PRIVILEGES`.
    cursor = await conn.execute(
        "SELECT w.schema, w.tbl, p.privilege "
        "FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS w(schema, tbl, at) "
        "JOIN pg_namespace n ON n.nspname = w.schema "
        "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.tbl "
        "AND c.relkind IN ('r', 'p') "
        "CROSS JOIN unnest(%s::text[]) WITH ORDINALITY AS p(privilege, at) "
        "WHERE NOT has_table_privilege(%s::name, c.oid, p.privilege) "
        "ORDER BY w.at, p.at",
        ([s for s, _ in tables], [t for _, t in tables], list(TABLE_PRIVILEGES), who),
    )
    missing += [f'{r["privilege"]} on {r["schema"]}."{r["tbl"]}"' for r in await cursor.fetchall()]
    for column in SERIAL_COLUMNS:
        if column.schema in unusable:
            continue
        for sequence in await serial_sequences(conn, column):
            for privilege in SEQUENCE_PRIVILEGES:
                row = await _one(
                    conn,
                    "SELECT has_sequence_privilege(%s::name, %s::oid, %s) AS ok",
                    (who, sequence.oid, privilege),
                )
                if not row["ok"]:
                    missing.append(f'{privilege} on sequence {sequence.schema}."{sequence.name}"')
    return missing


@dataclass(frozen=True)
class SequenceName:
    schema: str
    name: str
    oid: int


async def serial_sequences(conn: Connection, column: SerialColumn) -> list[SequenceName]:
    """The sequence behind a serial (or identity) column, or nothing when the table does not
    exist yet. Read from the catalog, as pg_get_serial_sequence does, so that a role without
    USAGE on the schema may ask too."""
    cursor = await conn.execute(
        "SELECT sn.nspname AS schema, s.relname AS name, s.oid::int8 AS oid "
        "FROM pg_class t JOIN pg_namespace tn ON tn.oid = t.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = %s "
        "JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid "
        "AND d.refobjsubid = a.attnum AND d.classid = 'pg_class'::regclass "
        "AND d.deptype IN ('a', 'i') "
        "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
        "JOIN pg_namespace sn ON sn.oid = s.relnamespace "
        "WHERE tn.nspname = %s AND t.relname = %s",
        (column.column, column.schema, column.table),
    )
    return [SequenceName(r["schema"], r["name"], int(r["oid"])) for r in await cursor.fetchall()]


async def table_oid(conn: Connection, schema: str, table: str) -> int | None:
    """The table's oid, or None when it does not exist. From the catalog, which any role may
    read (a name lookup would need USAGE on the schema)."""
    cursor = await conn.execute(
        "SELECT c.oid::int8 AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (schema, table),
    )
    row = await cursor.fetchone()
    return None if row is None else int(row["oid"])


async def _current_user(conn: Connection) -> str:
    return str((await _one(conn, "SELECT current_user AS who", ()))["who"])


async def _one(conn: Connection, query: LiteralString, params: tuple[object, ...]) -> DictRow:
    cursor = await conn.execute(query, params)
    row = await cursor.fetchone()
    assert row is not None
    return row
