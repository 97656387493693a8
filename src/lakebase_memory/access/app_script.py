"""`lakebase-memory grant --sql`: the grants as one SQL script, for a DBA's SQL editor or psql.

A complete version of the seed's "Option B": one DO block that does what `grant` does, step
for step, from the same list of what the app needs (`schema/privileges.py`): creates the role
if it is missing (databricks_create_role on Lakebase, CREATE ROLE on plain PostgreSQL), creates
missing schemas, grants CONNECT, USAGE, the table DML and the sequence USAGE on what exists,
and default privileges for what the running role creates later. It decides at run time, so it
needs no connection to generate and may be run again.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from psycopg import sql

from lakebase_memory.access.app_plan import Principal, schema_privileges
from lakebase_memory.access.statements import EXTENSION, render
from lakebase_memory.schema.privileges import (
    DATABASE_PRIVILEGES,
    SCHEMA_PRIVILEGES,
    SEQUENCE_PRIVILEGES,
    SERIAL_COLUMNS,
    TABLE_PRIVILEGES,
    VECTOR_EXTENSION,
    VECTOR_TABLE,
    app_tables,
    required_schemas,
    sequence_schemas,
)


def _comment(text: str) -> str:
    """Text safe inside a `--` comment: a line break would end the comment."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _lit(value: str) -> str:
    return render(sql.Literal(value)).strip()


def _array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(_lit(v) for v in values) + "]::text[]"


def _rows(values: Sequence[tuple[str, ...]]) -> str:
    rows = ",\n            ".join("(" + ", ".join(_lit(v) for v in row) + ")" for row in values)
    return f"(VALUES\n            {rows})"


def grant_script(
    principal: Principal, checkpoint_schema: str, *, allow_create: bool = False
) -> str:
    schemas = required_schemas(checkpoint_schema)
    tables = app_tables(checkpoint_schema)
    serials = [(c.schema, c.table, c.column) for c in SERIAL_COLUMNS]
    on_schemas = ", ".join(p.value for p in schema_privileges(allow_create))
    body = f"""
DECLARE
    app_role      text   := {_lit(principal.name)};  -- {_comment(principal.how)}
    app_role_type text   := {_lit(principal.type.value)};
    owner_role    text   := current_user;  -- later tables and sequences of this role are covered
    s text;
    t record;
    seq text;
BEGIN
    -- 1. The role: a Databricks identity on Lakebase, a plain role on PostgreSQL.
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = app_role) THEN
        RAISE NOTICE 'lakebase-memory: role % exists', app_role;
    ELSIF EXISTS (SELECT FROM pg_available_extensions WHERE name = {_lit(EXTENSION)}) THEN
        CREATE EXTENSION IF NOT EXISTS {EXTENSION};
        PERFORM databricks_create_role(app_role, app_role_type);
        RAISE NOTICE 'lakebase-memory: created role % (databricks_create_role)', app_role;
    ELSE
        EXECUTE format('CREATE ROLE %I ' || CASE WHEN app_role_type = 'GROUP'
                       THEN 'NOLOGIN' ELSE 'LOGIN' END, app_role);
        RAISE NOTICE 'lakebase-memory: created role % (plain PostgreSQL)', app_role;
    END IF;

    -- 2. The app's schemas (created if missing, owned by you) and database.
    FOREACH s IN ARRAY {_array(schemas)} LOOP
        -- Checked first: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even then.
        IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = s) THEN
            EXECUTE format('CREATE SCHEMA %I', s);
        END IF;
    END LOOP;
    EXECUTE format('GRANT {", ".join(DATABASE_PRIVILEGES)} ON DATABASE %I TO %I',
                   current_database(), app_role);
    FOREACH s IN ARRAY {_array(schemas)} LOOP
        EXECUTE format('GRANT {on_schemas} ON SCHEMA %I TO %I', s, app_role);
    END LOOP;
    -- pgvector's schema (its type), once the memory store's vector table exists.
    IF to_regclass(format('%I.%I', {_lit(checkpoint_schema)}, {_lit(VECTOR_TABLE)})) IS NOT NULL
    THEN
        FOR s IN SELECT n.nspname FROM pg_extension e
                 JOIN pg_namespace n ON n.oid = e.extnamespace
                 WHERE e.extname = {_lit(VECTOR_EXTENSION)}
                 AND n.nspname <> ALL ({_array(schemas)}) LOOP
            EXECUTE format('GRANT {", ".join(SCHEMA_PRIVILEGES)} ON SCHEMA %I TO %I', s, app_role);
        END LOOP;
    END IF;

    -- 3. The app's tables that exist, the memory store's included (DELETE too: deleting a
    --    thread or a user's memories needs it).
    FOR t IN SELECT * FROM {_rows(tables)} AS v(s, n) LOOP
        IF to_regclass(format('%I.%I', t.s, t.n)) IS NOT NULL THEN
            EXECUTE format('GRANT {", ".join(TABLE_PRIVILEGES)} ON TABLE %I.%I TO %I',
                           t.s, t.n, app_role);
        END IF;
    END LOOP;

    -- 4. The sequences behind its serial columns (INSERT draws from them).
    FOR t IN SELECT * FROM {_rows(serials)} AS v(s, n, c) LOOP
        IF to_regclass(format('%I.%I', t.s, t.n)) IS NOT NULL THEN
            seq := pg_get_serial_sequence(format('%I.%I', t.s, t.n), t.c);
            IF seq IS NOT NULL THEN
                EXECUTE format('GRANT {", ".join(SEQUENCE_PRIVILEGES)} ON SEQUENCE %s TO %I',
                               seq, app_role);
            END IF;
        END IF;
    END LOOP;

    -- 5. Tables and sequences you create later (upgrades) are covered too.
    FOREACH s IN ARRAY {_array(schemas)} LOOP
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I '
                       'GRANT {", ".join(TABLE_PRIVILEGES)} ON TABLES TO %I',
                       owner_role, s, app_role);
    END LOOP;
    FOREACH s IN ARRAY {_array(sequence_schemas())} LOOP
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I '
                       'GRANT {", ".join(SEQUENCE_PRIVILEGES)} ON SEQUENCES TO %I',
                       owner_role, s, app_role);
    END LOOP;
    RAISE NOTICE 'lakebase-memory: % has what the app needs', app_role;
END
"""
    tag = "$grant$"
    while tag in body:  # a name could contain the delimiter: pick another
        tag = f"$grant_{secrets.token_hex(4)}$"
    name = _comment(principal.name)
    header = f"""-- lakebase-memory grant {name}: what the app needs, and no more.
-- Run it as the owner of the app's tables (the role that ran `lakebase-memory setup`),
-- in a SQL editor or with psql:  psql "<connection>" -v ON_ERROR_STOP=1 -f grant.sql
-- It gives the same privileges as `lakebase-memory grant`, and may be run again.
"""
    return f"{header}DO {tag}{body}{tag};\n"
