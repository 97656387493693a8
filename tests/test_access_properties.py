"""Property-based: any role, schema or table name (quotes, spaces, @, dots, unicode, SQL
fragments) is created, granted to and revoked from exactly, against the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg_pool import ConnectionPool

from conftest import create_database
from lakebase_memory import LakebaseClient, SchemaPrivilege, SequencePrivilege, TablePrivilege
from lakebase_memory.access.statements import MAX_IDENTIFIER_BYTES

FRAGMENTS = [
    '"; DROP TABLE canary; --',
    "' OR '1'='1",
    "x\"y'z",
    "$$",
    "$grant$",
    "a.b",
    " leading and trailing ",
    "Robert'); DROP TABLE canary;--",
    "\\",
    "public",
    "ünï cødé 漢字 🐘",
    "user@example.com",
    "%s %(x)s {}",
]
PIECES = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12
    ),
)


def names(prefix: str) -> st.SearchStrategy[str]:
    """A prefix keeps clear of reserved names (pg_*, public, existing roles)."""
    return (
        st.lists(PIECES, min_size=1, max_size=3)
        .map(lambda parts: prefix + "".join(parts))
        .filter(lambda n: len(n.encode()) <= MAX_IDENTIFIER_BYTES)
    )


PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def client(pg_admin: str) -> Iterator[LakebaseClient]:
    database = create_database(pg_admin)
    with (
        ConnectionPool(database, kwargs={"autocommit": True}, open=True) as pool,
        LakebaseClient(pool=pool) as lakebase,
    ):
        lakebase.execute("CREATE TABLE canary (id int)")
        yield lakebase


def privilege(client: LakebaseClient, role: str, schema: str, table: str, what: str) -> bool:
    rows = client.execute(
        "SELECT has_table_privilege(%s::name, format('%%I.%%I', %s::text, %s::text), %s) AS ok",
        (role, schema, table, what),
    )
    return bool(rows and rows[0]["ok"])


@PROPERTY
@given(role=names("r "), schema=names("s "), table=names("t "))
def test_any_name_is_granted_and_revoked_exactly(
    client: LakebaseClient, role: str, schema: str, table: str
) -> None:
    schema_id = sql.Identifier(schema)
    try:
        client.create_role(role, "USER")
        assert client.role_exists(role)
        client.execute(sql.SQL("CREATE SCHEMA {}").format(schema_id))
        client.execute(sql.SQL("CREATE TABLE {} (id serial)").format(sql.Identifier(schema, table)))
        # The string form splits at the first dot and strips: use it when that is exact.
        exact = "." not in schema and schema == schema.strip() and table == table.strip()
        named: str | tuple[str, str] = f"{schema}.{table}" if exact else (schema, table)
        client.grant_schema(role, [SchemaPrivilege.USAGE], [schema])
        client.grant_table(role, [TablePrivilege.SELECT, TablePrivilege.INSERT], [named])
        client.grant_all_sequences_in_schema(role, [SequencePrivilege.USAGE], [schema])
        client.alter_default_privileges(
            role, [TablePrivilege.SELECT], owner="postgres", schemas=[schema]
        )

        report = client.privileges_of(role)
        assert report.on("schema", schema) == {"USAGE"}
        assert report.on("table", f"{schema}.{table}") == {"SELECT", "INSERT"}
        sequence = client.execute(
            "SELECT n.nspname || '.' || c.relname AS name FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = "
            "pg_get_serial_sequence(format('%%I.%%I', %s::text, %s::text), 'id')::regclass",
            (schema, table),
        )
        assert sequence and report.on("sequence", sequence[0]["name"]) == {"USAGE"}
        assert report.on("default privileges on tables", f"for role postgres in schema {schema}")
        assert privilege(client, role, schema, table, "SELECT")
        assert not privilege(client, role, schema, table, "DELETE")

        client.revoke_table(role, [TablePrivilege.ALL], [named])
        client.revoke_all_sequences_in_schema(role, [SequencePrivilege.ALL], [schema])
        client.revoke_schema(role, [SchemaPrivilege.ALL], [schema])
        client.revoke_default_privileges(
            role, [TablePrivilege.SELECT], owner="postgres", schemas=[schema]
        )
        assert client.privileges_of(role).grants == ()
        assert client.execute("SELECT to_regclass('public.canary') IS NOT NULL AS ok") == [
            {"ok": True}
        ]
    finally:
        client.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema_id))
        if client.role_exists(role):
            client.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(role)))


@PROPERTY
@given(text=st.text(max_size=30))
def test_privileges_never_come_from_free_text(client: LakebaseClient, text: str) -> None:
    if text in {p.value for p in TablePrivilege}:
        return
    with pytest.raises(ValueError):
        client.grant_table("r", [text], ["canary"])  # type: ignore[list-item]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(role=names(""))
def test_role_names_round_trip_through_create_role(client: LakebaseClient, role: str) -> None:
    if role.startswith("pg_") or role in ("public", "none") or not role.strip():
        return
    if client.role_exists(role):  # e.g. "postgres"
        return
    try:
        client.create_role(role, "USER")
        rows = client.execute("SELECT rolname FROM pg_roles WHERE rolname = %s", (role,))
        assert rows == [{"rolname": role}]
        assert client.privileges_of(role).can_login
    finally:
        if client.role_exists(role):
            client.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
