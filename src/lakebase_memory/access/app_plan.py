"""What `lakebase-memory grant` does for one principal, as a list of steps.

The privileges come from `schema/privileges.py` (what the app needs): CONNECT on the database,
USAGE on its schemas, SELECT/INSERT/UPDATE/DELETE on its tables (the long-term memory store's
included, and its vector tables where they exist), USAGE on its serial
sequences, and default privileges so that tables and sequences the owner creates later (an
upgrade's `lakebase-memory setup`) are covered too. CREATE on the schemas only with
`allow_create` (for an app that creates its own tables). Missing schemas are created first,
owned by the connected role, so that the grants on them can be given.

Everything is idempotent: GRANT of a privilege already held is a no-op, and an existing role
is kept.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from lakebase_memory.access import statements as st
from lakebase_memory.access.async_client import AsyncLakebaseClient
from lakebase_memory.access.privileges import (
    DatabasePrivilege,
    IdentityType,
    SchemaPrivilege,
    SequencePrivilege,
    TablePrivilege,
    privileges_text,
)
from lakebase_memory.schema.privileges import (
    DATABASE_PRIVILEGES,
    SCHEMA_PRIVILEGES,
    SEQUENCE_PRIVILEGES,
    SERIAL_COLUMNS,
    TABLE_PRIVILEGES,
    app_tables,
    extension_schemas,
    required_schemas,
    sequence_schemas,
    serial_sequences,
    table_oid,
)

Action = Callable[[AsyncLakebaseClient], Awaitable[Any]]


@dataclass(frozen=True)
class Principal:
    """Who gets the privileges: the Postgres role name and its Databricks identity type."""

    name: str
    type: IdentityType
    how: str  # how it was found, for the output ("client id of app 'x'", "as given")


@dataclass(frozen=True)
class AppState:
    """What the plan depends on, read as the connected (owner) role."""

    owner: str
    database: str
    role_exists: bool
    databricks_auth: bool  # the extension is available: roles via databricks_create_role
    schemas: frozenset[str]  # the app's schemas that exist
    tables: tuple[tuple[str, str], ...]  # the app's tables that exist
    sequences: tuple[tuple[str, str], ...]  # the sequences behind its serial columns
    # Other schemas the app uses: pgvector's, once the store's vector table exists.
    extension_schemas: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    title: str
    statements: tuple[str, ...]  # the SQL it runs, for --dry-run
    action: Action
    remedy: str  # what to do when it fails


async def inspect(client: AsyncLakebaseClient, principal: str, checkpoint_schema: str) -> AppState:
    rows = await client.execute(
        "SELECT current_user AS owner, current_database() AS database, EXISTS (SELECT FROM "
        "pg_available_extensions WHERE name = %s) AS databricks_auth",
        (st.EXTENSION,),
    )
    assert rows
    schemas = required_schemas(checkpoint_schema)
    found = await client.execute(
        "SELECT nspname AS name FROM pg_namespace WHERE nspname = ANY(%s)", (schemas,)
    )
    existing = frozenset(r["name"] for r in found or ())
    tables: list[tuple[str, str]] = []
    sequences: list[tuple[str, str]] = []
    assert client.pool is not None
    async with client.pool.connection() as conn:  # catalog reads: no privileges needed
        for schema, table in app_tables(checkpoint_schema):
            if await table_oid(conn, schema, table) is not None:
                tables.append((schema, table))
        for column in SERIAL_COLUMNS:
            sequences += [(s.schema, s.name) for s in await serial_sequences(conn, column)]
        extensions = await extension_schemas(conn, checkpoint_schema)
    return AppState(
        owner=str(rows[0]["owner"]),
        database=str(rows[0]["database"]),
        role_exists=await client.role_exists(principal),
        databricks_auth=bool(rows[0]["databricks_auth"]),
        schemas=existing,
        tables=tuple(tables),
        sequences=tuple(sequences),
        extension_schemas=tuple(extensions),
    )


def schema_privileges(allow_create: bool) -> list[SchemaPrivilege]:
    needed = [SchemaPrivilege(p) for p in SCHEMA_PRIVILEGES]
    return [*needed, SchemaPrivilege.CREATE] if allow_create else needed


def build_plan(
    principal: Principal, state: AppState, checkpoint_schema: str, *, allow_create: bool = False
) -> list[Step]:
    """The steps, in order; pure (the state was read before)."""
    p = principal.name
    steps: list[Step] = []
    as_owner = (
        f"Run `lakebase-memory grant` as the owner of the app's tables (the role that ran "
        f"`lakebase-memory setup`; you are {state.owner}), or have them run the SQL that "
        f"`lakebase-memory grant {shlex.quote(p)} --sql` prints."
    )
    if not state.role_exists:
        steps.append(_role_step(principal, state))
    missing = [s for s in required_schemas(checkpoint_schema) if s not in state.schemas]
    if missing:
        steps.append(
            Step(
                f"created schema{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(owned by {state.owner})",
                tuple(st.render(_create_schema(s)) for s in missing),
                _create_schemas(missing),
                "Creating a schema needs CREATE on the database: run as the database owner, "
                "or `lakebase-memory setup` as the owner.",
            )
        )
    database = [DatabasePrivilege(x) for x in DATABASE_PRIVILEGES]
    steps.append(
        Step(
            f"{privileges_text(database)} on database {state.database}",
            _grants(database, st.Target.DATABASE, [sql.Identifier(state.database)], p),
            lambda c: c.grant_database(p, database, [state.database]),
            as_owner,
        )
    )
    schemas = required_schemas(checkpoint_schema)
    on_schemas = schema_privileges(allow_create)
    steps.append(
        Step(
            f"{privileges_text(on_schemas)} on schema{'s' if len(schemas) > 1 else ''} "
            + ", ".join(schemas),
            _grants(on_schemas, st.Target.SCHEMA, [sql.Identifier(s) for s in schemas], p),
            lambda c: c.grant_schema(p, on_schemas, schemas),
            as_owner,
        )
    )
    if state.extension_schemas:
        extra = list(state.extension_schemas)
        usage = [SchemaPrivilege(x) for x in SCHEMA_PRIVILEGES]
        steps.append(
            Step(
                f"{privileges_text(usage)} on schema{'s' if len(extra) > 1 else ''} "
                f"{', '.join(extra)} (pgvector's type, for the memory store's vectors)",
                _grants(usage, st.Target.SCHEMA, [sql.Identifier(s) for s in extra], p),
                lambda c: c.grant_schema(p, usage, extra),
                as_owner,
            )
        )
    table_privileges = [TablePrivilege(x) for x in TABLE_PRIVILEGES]
    if state.tables:
        tables = list(state.tables)
        steps.append(
            Step(
                f"{privileges_text(table_privileges)} on {len(tables)} tables: "
                + ", ".join(f"{s}.{t}" for s, t in tables),
                _grants(
                    table_privileges, st.Target.TABLE, [sql.Identifier(s, t) for s, t in tables], p
                ),
                lambda c: c.grant_table(p, table_privileges, tables),
                as_owner,
            )
        )
    sequence_privileges = [SequencePrivilege(x) for x in SEQUENCE_PRIVILEGES]
    if state.sequences:
        sequences = list(state.sequences)
        steps.append(
            Step(
                f"{privileges_text(sequence_privileges)} on "
                f"sequence{'s' if len(sequences) > 1 else ''} "
                + ", ".join(f"{s}.{q}" for s, q in sequences),
                _grants(
                    sequence_privileges,
                    st.Target.SEQUENCE,
                    [sql.Identifier(s, q) for s, q in sequences],
                    p,
                ),
                lambda c: c.grant_sequence(p, sequence_privileges, sequences),
                as_owner,
            )
        )
    steps.append(_default_step(p, state.owner, table_privileges, schemas, "TABLES"))
    steps.append(
        _default_step(p, state.owner, sequence_privileges, sequence_schemas(), "SEQUENCES")
    )
    return steps


def _role_step(principal: Principal, state: AppState) -> Step:
    p, kind = principal.name, principal.type
    statements: tuple[sql.Composed, ...]
    if state.databricks_auth:
        statements = (st.create_extension(), st.databricks_create_role(p, kind))
        how = f"databricks_create_role, {kind.value}"
    else:
        statements = (st.create_role(p, login=kind is not IdentityType.GROUP),)
        how = "plain PostgreSQL: no databricks_auth extension"
    return Step(
        f'created role "{p}" ({how})',
        tuple(st.render(s) for s in statements),
        lambda c: c.create_role(p, kind),
        "Run `lakebase-memory grant` as the instance owner or another member of "
        "databricks_superuser (CAN MANAGE on the instance); on PostgreSQL, as a role with "
        "CREATEROLE. Check the identity: a user's email, a service principal's application "
        "(client) id, or a group name, with the matching --type.",
    )


def _default_step(
    p: str,
    owner: str,
    privileges: list[TablePrivilege] | list[SequencePrivilege],
    schemas: list[str],
    objects: str,
) -> Step:
    what = st.DefaultObjects(objects)
    return Step(
        f"{privileges_text(privileges)} on {objects.lower()} {owner} creates later in "
        f"{', '.join(schemas)} (default privileges)",
        tuple(
            st.render(st.alter_default_privileges(owner, s, privileges, what, p)) for s in schemas
        ),
        lambda c: c.alter_default_privileges(
            p, privileges, owner=owner, schemas=schemas, objects=what
        ),
        f"Default privileges can only be set by the creating role ({owner}) or a member of "
        "it: run `lakebase-memory grant` as the role that creates the app's tables.",
    )


def _create_schema(schema: str) -> sql.Composed:
    return sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))


def _create_schemas(schemas: list[str]) -> Action:
    async def run(client: AsyncLakebaseClient) -> None:
        for schema in schemas:
            await client.execute(_create_schema(schema))

    return run


def _grants(
    privileges: list[Any], target: st.Target, names: list[sql.Identifier], grantee: str
) -> tuple[str, ...]:
    return tuple(st.render(st.grant(privileges, target, name, grantee)) for name in names)
