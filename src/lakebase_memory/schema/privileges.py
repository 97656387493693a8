"""What the app's role must be allowed to do, and what it lacks.

The single source of truth for "what the app needs": start-up reports what is missing from it,
`lakebase-memory grant` grants exactly it (plus default privileges, so that tables the owner
creates later are covered), and `lakebase-memory doctor` checks it.

- CONNECT on the database;
- USAGE on the app's schemas (the checkpoint schema, `ai_chatbot`, `drizzle`), and on the
  pgvector extension's schema (`public`) where the store's vector table exists: the store's
  queries name its type `vector`;
- SELECT, INSERT, UPDATE, DELETE on each of the app's tables (DELETE: deleting a thread deletes
  its rows, which the reference's grants forget), the long-term memory store's included
  (`store_migrations`, `store`; and `vector_migrations`, `store_vectors` where they exist);
- USAGE on the sequences behind the app's serial columns (`drizzle.__drizzle_migrations.id`):
  `nextval()` needs USAGE (or UPDATE); the app never reads or sets a sequence directly.

CREATE is not needed once an owner has created the tables (`lakebase-memory setup`).

The store's vector tables exist only where an embedding model is (or was) configured: they
*must exist* when one is configured (`required_tables(..., vectors=True)`: set-up creates them,
doctor reports them missing), and they *must be usable* wherever they exist (`app_tables`:
what grant grants and the privilege checks check, on the tables that exist), so a grant made
while the owner's configuration has no embedding model still covers them, and an app that
turns one on later needs no new grant.
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
    RESPONSE_TABLES,
    STORE_TABLES,
    VECTOR_TABLES,
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
VECTOR_EXTENSION = "vector"  # pgvector: the type of `store_vectors.embedding`
VECTOR_TABLE = VECTOR_TABLES[-1]


def required_schemas(checkpoint_schema: str) -> list[str]:
    return list(dict.fromkeys([checkpoint_schema, CHAT_SCHEMA, BOOKKEEPING_SCHEMA]))


def required_tables(checkpoint_schema: str, *, vectors: bool = False) -> list[tuple[str, str]]:
    """The tables the app needs to exist; with `vectors` (an embedding model is configured),
    the store's vector tables too."""
    return [
        *((checkpoint_schema, table) for table in CHECKPOINT_TABLES),
        # The long-term memory store: LangGraph's PostgresStore tables, beside the checkpoints.
        *((checkpoint_schema, table) for table in STORE_TABLES),
        *((checkpoint_schema, table) for table in (VECTOR_TABLES if vectors else ())),
        *((CHAT_SCHEMA, table) for table in CHAT_TABLES),
        # The linear saver's message log: in the chat schema, where the seed's grants reach.
        *((CHAT_SCHEMA, table) for table in MESSAGE_LOG_TABLES),
        # Background responses and their stream events (issue 15).
        *((CHAT_SCHEMA, table) for table in RESPONSE_TABLES),
        (BOOKKEEPING_SCHEMA, BOOKKEEPING_TABLE),
    ]


def app_tables(checkpoint_schema: str) -> list[tuple[str, str]]:
    """Every table the app may use, the vector tables included: grant grants, and the
    privilege checks check, those of them that exist."""
    return required_tables(checkpoint_schema, vectors=True)


def sequence_schemas() -> list[str]:
    """Schemas where the app's sequences live (default privileges on sequences go there)."""
    return list(dict.fromkeys(column.schema for column in SERIAL_COLUMNS))


Connection = psycopg.AsyncConnection[DictRow]


async def missing_privileges(
    conn: Connection, checkpoint_schema: str = "public", role: str | None = None
) -> list[str]:
    """Each privilege `role` (default: the connected role) lacks, in the order they matter:
    `CONNECT on database d`, `USAGE on schema s`, `PRIVILEGE on s."t"`,
    `USAGE on sequence s."q"`. Every table of `app_tables` that exists is checked (the store's
    vector tables too, where they exist). Missing schemas and tables are not reported:
    creating them is set-up's business."""
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
    schemas = required_schemas(checkpoint_schema)
    schemas += await extension_schemas(conn, checkpoint_schema)
    for schema in schemas:
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
    tables = [(s, t) for s, t in app_tables(checkpoint_schema) if s not in unusable]
    # One query for every table and privilege (start-up runs this; on Lakebase each round
    # trip counts), in the order of `app_tables`, then of `TABLE_PRIVILEGES`.
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


async def extension_schemas(conn: Connection, checkpoint_schema: str) -> list[str]:
    """Schemas beyond the app's own that the app must be able to use: pgvector's (where the
    extension puts its type, `public` as the set-up creates it), once the store's vector table
    exists. From the catalog, which any role may read."""
    if await table_oid(conn, checkpoint_schema, VECTOR_TABLE) is None:
        return []
    cursor = await conn.execute(
        "SELECT n.nspname AS name FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = %s",
        (VECTOR_EXTENSION,),
    )
    own = required_schemas(checkpoint_schema)
    return [str(r["name"]) for r in await cursor.fetchall() if r["name"] not in own]


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
