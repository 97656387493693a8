"""The access package's pure parts: SQL builders, enums, validation texts (no database)."""

from __future__ import annotations

import inspect

import pytest
from psycopg import sql

from lakebase_memory import (
    AsyncLakebaseClient,
    DatabasePrivilege,
    LakebaseClient,
    SchemaPrivilege,
    SequencePrivilege,
    TablePrivilege,
)
from lakebase_memory.access import statements as st
from lakebase_memory.access.api import PrivilegeApi
from lakebase_memory.access.app_plan import Principal
from lakebase_memory.access.app_script import grant_script
from lakebase_memory.access.privileges import (
    IdentityType,
    coerce_identity_type,
    coerce_privileges,
    privileges_text,
)


def render(statement: sql.Composable) -> str:
    return st.render(statement)


# --- enums and the ALL rule --------------------------------------------------------------------


def test_enums_have_the_reference_members() -> None:
    assert [p.value for p in TablePrivilege] == [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "TRUNCATE",
        "REFERENCES",
        "TRIGGER",
        "ALL",
    ]
    assert [p.value for p in SchemaPrivilege] == ["USAGE", "CREATE", "ALL"]
    assert [p.value for p in SequencePrivilege] == ["USAGE", "SELECT", "UPDATE", "ALL"]
    assert [p.value for p in DatabasePrivilege] == ["CONNECT", "CREATE", "TEMPORARY", "ALL"]
    assert isinstance(TablePrivilege.SELECT, str)  # `str, Enum`, as in the reference
    assert TablePrivilege.SELECT == "SELECT"


def test_all_anywhere_renders_all_privileges() -> None:
    name = sql.Identifier("s")
    mixed = [SchemaPrivilege.USAGE, SchemaPrivilege.ALL]
    assert render(st.grant(mixed, st.Target.SCHEMA, name, "g")) == (
        'GRANT ALL PRIVILEGES ON SCHEMA "s" TO "g"'
    )
    assert privileges_text(mixed) == "ALL PRIVILEGES"
    assert privileges_text([TablePrivilege.SELECT, TablePrivilege.DELETE]) == "SELECT, DELETE"


def test_privileges_are_checked_against_their_enum() -> None:
    assert coerce_privileges(TablePrivilege, ["SELECT", TablePrivilege.DELETE, "SELECT"]) == [
        TablePrivilege.SELECT,
        TablePrivilege.DELETE,
    ]
    for bad in ("select", "SELECT; DROP TABLE x", SchemaPrivilege.USAGE, 1):
        with pytest.raises(ValueError, match="is not a table privilege"):
            coerce_privileges(TablePrivilege, [bad])


def test_identity_types() -> None:
    assert coerce_identity_type("service_principal") is IdentityType.SERVICE_PRINCIPAL
    assert coerce_identity_type(IdentityType.GROUP) is IdentityType.GROUP
    with pytest.raises(ValueError, match="identity_type must be one of 'USER'"):
        coerce_identity_type("ROBOT")


# --- statements ----------------------------------------------------------------------------------


def test_every_identifier_is_quoted() -> None:
    grantee = 'a"b @ é; DROP TABLE x; --'
    table = st.parse_qualified("public.users").identifier
    assert render(st.grant([TablePrivilege.SELECT], st.Target.TABLE, table, grantee)) == (
        'GRANT SELECT ON TABLE "public"."users" TO "a""b @ é; DROP TABLE x; --"'
    )
    assert (
        render(
            st.grant(
                [SequencePrivilege.USAGE],
                st.Target.ALL_SEQUENCES,
                sql.Identifier("s"),
                "g",
                revoke=True,
            )
        )
        == 'REVOKE USAGE ON ALL SEQUENCES IN SCHEMA "s" FROM "g"'
    )
    assert (
        render(st.grant([DatabasePrivilege.CONNECT], st.Target.DATABASE, sql.Identifier("db"), "g"))
        == 'GRANT CONNECT ON DATABASE "db" TO "g"'
    )
    assert (
        render(
            st.grant(
                [TablePrivilege.INSERT], st.Target.ALL_TABLES, sql.Identifier("My Schema"), "g"
            )
        )
        == 'GRANT INSERT ON ALL TABLES IN SCHEMA "My Schema" TO "g"'
    )


def test_default_privileges_name_the_owner() -> None:
    statement = st.alter_default_privileges(
        "owner@example.com", "drizzle", [SequencePrivilege.USAGE], st.DefaultObjects.SEQUENCES, "sp"
    )
    assert render(statement) == (
        'ALTER DEFAULT PRIVILEGES FOR ROLE "owner@example.com" IN SCHEMA "drizzle" '
        'GRANT USAGE ON SEQUENCES TO "sp"'
    )
    revoke = st.alter_default_privileges(
        "o", "s", [TablePrivilege.ALL], st.DefaultObjects.TABLES, "sp", revoke=True
    )
    assert render(revoke).endswith('REVOKE ALL PRIVILEGES ON TABLES FROM "sp"')


def test_role_statements_take_values_as_literals() -> None:
    assert render(st.databricks_create_role("it's", IdentityType.USER)) == (
        "SELECT databricks_create_role('it''s', 'USER')"
    )
    assert render(st.create_role('x"y')) == 'CREATE ROLE "x""y" LOGIN'
    assert render(st.create_role("team", login=False)) == 'CREATE ROLE "team" NOLOGIN'
    assert render(st.create_extension()) == 'CREATE EXTENSION IF NOT EXISTS "databricks_auth"'


def test_table_names() -> None:
    assert st.parse_qualified(" public . users ") == st.QualifiedName("public", "users")
    assert st.parse_qualified("users") == st.QualifiedName(None, "users")
    assert st.parse_qualified(("a.b", " c ")) == st.QualifiedName("a.b", " c ")  # taken as is
    for blank in ("", "   "):
        with pytest.raises(ValueError) as error:
            st.parse_qualified(blank)
        assert str(error.value) == (
            "Table name cannot be empty. Provide a valid table name "
            "(e.g., 'users' or 'public.users')."
        )
    with pytest.raises(ValueError, match=r"Invalid table format 'public\.'"):
        st.parse_qualified("public.")


def test_names_postgres_would_mangle_are_refused() -> None:
    with pytest.raises(ValueError, match="truncates names to 63 bytes"):
        st.check_name("é" * 32, "grantee")  # 64 bytes
    assert st.check_name("é" * 31 + "x", "grantee")  # 63 bytes is fine
    with pytest.raises(ValueError, match="NUL"):
        st.check_name("a\x00b", "role")
    with pytest.raises(
        ValueError, match=r"'schemas' cannot be empty\. Provide at least one schema\."
    ):
        st.check_not_empty([], "schemas")
    with pytest.raises(ValueError, match="not a single string"):
        st.check_not_empty("public", "schemas")


# --- constructor validation (reference texts; nothing connects) ------------------------------


@pytest.mark.parametrize("client_class", [LakebaseClient, AsyncLakebaseClient])
def test_constructor_validation(client_class) -> None:
    with pytest.raises(ValueError) as error:
        client_class(pool=object(), instance_name="x")
    assert "Provide either 'pool' or connection parameters (" in str(error.value)
    assert str(error.value).endswith("), not both.")
    with pytest.raises(ValueError) as error:
        client_class()
    assert str(error.value) == (
        "Must provide 'pool', 'instance_name' (provisioned), 'autoscaling_endpoint', or "
        "'branch' (autoscaling)."
    )
    for kwargs in ({"project": "p"}, {"branch": "b"}):
        with pytest.raises(ValueError, match="Both 'project' and 'branch' are required"):
            client_class(**kwargs)
    with pytest.raises(ValueError, match="Choose one mode"):
        client_class(instance_name="i", project="p", branch="b")


def test_both_clients_have_the_one_api_and_the_async_one_awaits() -> None:
    assert issubclass(LakebaseClient, PrivilegeApi)
    assert issubclass(AsyncLakebaseClient, PrivilegeApi)
    own = {"from_target", "open", "close", "pool"}
    for cls in (LakebaseClient, AsyncLakebaseClient):
        public = {name for name in vars(cls) if not name.startswith("_")}
        assert public <= own, (cls, public - own)  # no method of the API redefined
    assert inspect.iscoroutinefunction(AsyncLakebaseClient._run)
    assert not inspect.iscoroutinefunction(LakebaseClient._run)


# --- the --sql script ----------------------------------------------------------------------------


def test_the_script_quotes_what_it_is_given() -> None:
    nasty = "x'; DROP TABLE t; --\n$grant$"
    text = grant_script(Principal(nasty, IdentityType.USER, "as given\nDROP"), "public")
    assert "'x''; DROP TABLE t; --\n$grant$'" in text  # a literal, inside the DO body
    delimiter = text.split("DO ", 1)[1].split("\n", 1)[0]
    assert delimiter != "$grant$" and delimiter.startswith("$grant_")
    assert text.rstrip().endswith(delimiter + ";")
    assert "-- lakebase-memory grant x'; DROP TABLE t; --?$grant$" in text  # comment stays one line
    assert "as given?DROP" in text
