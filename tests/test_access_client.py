"""LakebaseClient and AsyncLakebaseClient on plain PostgreSQL (the embedded server): every
operation, and the SQLSTATE mapping with errors the real server raises."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from conftest import create_database
from lakebase_memory import (
    AsyncLakebaseClient,
    DatabasePrivilege,
    LakebaseClient,
    SchemaPrivilege,
    SequencePrivilege,
    TablePrivilege,
)
from lakebase_memory.access import AccessError
from lakebase_memory.access.errors import grant_error

ORIGINAL = "Original error: "


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def shared_database(pg_admin: str) -> str:
    """One database for this module's tests (each test works in its own schema `app`)."""
    return create_database(pg_admin)


@pytest.fixture
def database(shared_database: str) -> str:
    return shared_database


@pytest.fixture
def client(shared_database: str) -> Iterator[LakebaseClient]:
    with (
        ConnectionPool(shared_database, kwargs={"autocommit": True}, open=True) as pool,
        LakebaseClient(pool=pool) as lakebase,
    ):
        lakebase.execute("DROP SCHEMA IF EXISTS app, s CASCADE")
        lakebase.execute("CREATE SCHEMA app; CREATE TABLE app.items (id serial PRIMARY KEY)")
        yield lakebase


def assert_mapped(
    error: pytest.ExceptionInfo[Exception], kind: type, cause: type, *texts: str
) -> None:
    assert isinstance(error.value, kind) and isinstance(error.value, AccessError)
    assert isinstance(error.value.__cause__, cause)
    message = str(error.value)
    assert message.endswith(ORIGINAL + str(error.value.__cause__)), message
    for text in texts:
        assert text in message, message


# --- operations ----------------------------------------------------------------------------


def test_execute_returns_dict_rows_or_none(client: LakebaseClient) -> None:
    assert client.execute(
        "SELECT %s::int AS n, %(x)s::text AS x".replace("%s", "1"), {"x": "y"}
    ) == [{"n": 1, "x": "y"}]
    assert client.execute("SET application_name = 'x'") is None


def test_create_role_on_plain_postgres_says_so(client: LakebaseClient, caplog) -> None:
    role = unique("plain")
    assert not client.role_exists(role)
    with caplog.at_level(logging.INFO, logger="lakebase_memory.access"):
        assert client.create_role(role, "USER") is None
        client.create_role(role, "USER")  # 42710: already exists, not an error
    assert client.role_exists(role)
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 2
    assert "databricks_auth extension is not available" in warning[0].getMessage()
    assert f"creating '{role}' as a LOGIN role" in warning[0].getMessage()
    assert f"Role '{role}' already exists, skipping creation." in caplog.text
    report = client.privileges_of(role)
    assert report.exists and report.can_login and not report.superuser


def test_a_group_is_a_nologin_role(client: LakebaseClient) -> None:
    group = unique("group")
    client.create_role(group, "GROUP")
    assert not client.privileges_of(group).can_login


def test_grants_revokes_and_the_report(client: LakebaseClient) -> None:
    role = unique("app")
    client.create_role(role, "SERVICE_PRINCIPAL")
    client.grant_database(role, [DatabasePrivilege.CONNECT, DatabasePrivilege.TEMPORARY])
    client.grant_schema(role, [SchemaPrivilege.USAGE], ["app"])
    client.grant_table(role, [TablePrivilege.SELECT, TablePrivilege.DELETE], ["app.items"])
    client.grant_all_sequences_in_schema(role, [SequencePrivilege.USAGE], ["app"])
    client.alter_default_privileges(
        role, [TablePrivilege.SELECT], owner="postgres", schemas=["app"]
    )
    client.alter_default_privileges(
        role, [SequencePrivilege.USAGE], owner="postgres", schemas=["app"]
    )
    database = client.execute("SELECT current_database() AS d")[0]["d"]
    report = client.privileges_of(role)
    assert report.on("database", database) == {"CONNECT", "TEMPORARY"}
    assert report.on("schema", "app") == {"USAGE"}
    assert report.on("table", "app.items") == {"SELECT", "DELETE"}
    assert report.on("sequence", "app.items_id_seq") == {"USAGE"}
    assert report.on("default privileges on tables", "for role postgres in schema app") == {
        "SELECT"
    }
    assert report.on("default privileges on sequences", "for role postgres in schema app") == {
        "USAGE"
    }
    # Default privileges reach tables created later, by that owner.
    client.execute("CREATE TABLE app.later (id int)")
    assert client.privileges_of(role).on("table", "app.later") == {"SELECT"}
    client.grant_all_tables_in_schema(role, [TablePrivilege.ALL], ["app"])
    every = client.privileges_of(role).on("table", "app.items")
    assert {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"} <= every

    client.revoke_all_tables_in_schema(role, [TablePrivilege.ALL], ["app"])
    client.revoke_table(role, [TablePrivilege.SELECT], [("app", "later")])
    client.revoke_all_sequences_in_schema(role, [SequencePrivilege.ALL], ["app"])
    client.revoke_schema(role, [SchemaPrivilege.USAGE], ["app"])
    client.revoke_database(role, [DatabasePrivilege.ALL])
    client.revoke_default_privileges(
        role, [TablePrivilege.SELECT], owner="postgres", schemas=["app"]
    )
    client.revoke_default_privileges(
        role, [SequencePrivilege.USAGE], owner="postgres", schemas=["app"]
    )
    report = client.privileges_of(role)
    assert report.exists and report.grants == ()
    assert client.privileges_of(unique("nobody")).exists is False


def test_grant_sequence_and_revoke_sequence(client: LakebaseClient) -> None:
    role = unique("seq")
    client.create_role(role, "USER")
    client.grant_sequence(
        role, [SequencePrivilege.USAGE, SequencePrivilege.SELECT], ["app.items_id_seq"]
    )
    assert client.privileges_of(role).on("sequence", "app.items_id_seq") == {"USAGE", "SELECT"}
    client.revoke_sequence(role, [SequencePrivilege.SELECT], [("app", "items_id_seq")])
    assert client.privileges_of(role).on("sequence", "app.items_id_seq") == {"USAGE"}


async def test_the_async_client_runs_the_same_programs(database: str) -> None:
    async with (
        AsyncConnectionPool(database, kwargs={"autocommit": True}, open=False) as pool,
        AsyncLakebaseClient(pool=pool) as client,
    ):
        role = unique("async")
        await client.execute("DROP SCHEMA IF EXISTS s CASCADE")
        await client.execute("CREATE SCHEMA s; CREATE TABLE s.t (id int)")
        await client.create_role(role, "USER")
        assert await client.role_exists(role)
        await client.grant_schema(role, [SchemaPrivilege.USAGE], ["s"])
        await client.grant_table(role, [TablePrivilege.INSERT], ["s.t"])
        await client.alter_default_privileges(
            role, [TablePrivilege.SELECT], owner="postgres", schemas=["s"]
        )
        report = await client.privileges_of(role)
        assert report.on("table", "s.t") == {"INSERT"} and report.on("schema", "s") == {"USAGE"}
        with pytest.raises(ValueError, match="schema does not exist"):
            await client.grant_schema(role, [SchemaPrivilege.USAGE], ["missing"])
        await client.revoke_table(role, [TablePrivilege.INSERT], ["s.t"])
        assert (await client.privileges_of(role)).on("table", "s.t") == set()


# --- validation texts (reference) ---------------------------------------------------------------


def test_validation_texts(client: LakebaseClient) -> None:
    with pytest.raises(
        ValueError, match=r"^'schemas' cannot be empty\. Provide at least one schema\.$"
    ):
        client.grant_schema("r", [SchemaPrivilege.USAGE], [])
    with pytest.raises(
        ValueError, match=r"^'privileges' cannot be empty\. Provide at least one privilege\.$"
    ):
        client.grant_schema("r", [], ["app"])
    with pytest.raises(
        ValueError, match=r"^'tables' cannot be empty\. Provide at least one table\.$"
    ):
        client.grant_table("r", [TablePrivilege.SELECT], [])
    with pytest.raises(
        ValueError,
        match=r"^Table name cannot be empty\. Provide a valid table name "
        r"\(e\.g\., 'users' or 'public\.users'\)\.$",
    ):
        client.grant_table("r", [TablePrivilege.SELECT], ["  "])
    with pytest.raises(ValueError) as error:
        client.create_role("  ", "USER")
    assert str(error.value) == (
        "identity_name cannot be empty. Provide a valid Databricks identity "
        "(user email, service principal UUID, or group ID)."
    )
    with pytest.raises(ValueError, match="identity_type must be one of"):
        client.create_role("someone", "ROBOT")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="numeric service_principal_id"):
        client.create_role("1234567890123456", "SERVICE_PRINCIPAL")
    with pytest.raises(ValueError, match="is not a schema privilege"):
        client.grant_schema("r", ["USAGE; DROP SCHEMA app"], ["app"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="grantee cannot be empty"):
        client.grant_schema(" ", [SchemaPrivilege.USAGE], ["app"])


# --- SQLSTATE mapping, induced on the real server ------------------------------------------------


def test_42704_undefined_role(client: LakebaseClient) -> None:
    with pytest.raises(ValueError) as error:
        client.grant_schema(
            "no_such_role", [SchemaPrivilege.USAGE, SchemaPrivilege.CREATE], ["app"]
        )
    assert_mapped(
        error,
        ValueError,
        psycopg.errors.UndefinedObject,
        "Failed to grant USAGE, CREATE on schema 'app': object does not exist. Ensure "
        "the schema/table/sequence exists and the role 'no_such_role' has been created.",
    )


def test_3f000_missing_schema(client: LakebaseClient) -> None:
    role = unique("r")
    client.create_role(role, "USER")
    with pytest.raises(ValueError) as error:
        client.grant_all_tables_in_schema(role, [TablePrivilege.SELECT], ["nope"])
    assert_mapped(
        error,
        ValueError,
        psycopg.errors.InvalidSchemaName,
        "Failed to grant SELECT on all tables in schema 'nope': schema does not exist.",
    )


def test_42p01_missing_table(client: LakebaseClient) -> None:
    role = unique("r")
    client.create_role(role, "USER")
    with pytest.raises(ValueError) as error:
        client.grant_table(role, [TablePrivilege.SELECT], ["app.nope"])
    assert_mapped(
        error,
        ValueError,
        psycopg.errors.UndefinedTable,
        "Failed to grant SELECT on table 'app.nope': table does not exist.",
    )


def test_42501_insufficient_privilege(client: LakebaseClient, database: str) -> None:
    weak, other = unique("weak"), unique("other")
    client.create_role(weak, "USER")
    client.create_role(other, "USER")
    with (
        ConnectionPool(make_conninfo(database, user=weak), kwargs={"autocommit": True}) as pool,
        LakebaseClient(pool=pool) as as_weak,
    ):
        with pytest.raises(PermissionError) as error:
            as_weak.grant_table(other, [TablePrivilege.SELECT], ["app.items"])
        assert_mapped(
            error,
            PermissionError,
            psycopg.errors.InsufficientPrivilege,
            "Insufficient privileges to grant SELECT on table 'app.items'. Ensure you "
            "have 'CAN MANAGE' permission on the Lakebase instance",
        )
        with pytest.raises(PermissionError) as error:
            as_weak.create_role(unique("x"), "USER")  # no CREATEROLE
        assert_mapped(
            error,
            PermissionError,
            psycopg.errors.InsufficientPrivilege,
            "Insufficient privileges to create role",
        )
        with pytest.raises(PermissionError) as error:
            as_weak.alter_default_privileges(
                other, [TablePrivilege.SELECT], owner="postgres", schemas=["app"]
            )
        assert_mapped(
            error,
            PermissionError,
            psycopg.errors.InsufficientPrivilege,
            "Insufficient privileges to alter default privileges for role 'postgres'",
        )


def test_42883_no_databricks_create_role(client: LakebaseClient) -> None:
    with pytest.raises(RuntimeError) as error:
        client.create_role(unique("x"), "USER", ensure_extension=False)
    assert_mapped(
        error,
        RuntimeError,
        psycopg.errors.UndefinedFunction,
        "The databricks_create_role function is not available.",
    )


def test_0l000_invalid_grantor(client: LakebaseClient) -> None:
    # PostgreSQL 18 reports an invalid grantor only as a warning; a server that raises it
    # (as PL/pgSQL can) gets the reference's mapping.
    with pytest.raises(psycopg.errors.InvalidGrantor) as raised:
        client.execute(
            "DO $$ BEGIN RAISE EXCEPTION 'grantor must be current user' "
            "USING ERRCODE = 'invalid_grantor'; END $$"
        )
    mapped = grant_error(raised.value, "grant SELECT on table 'app.items'", "r")
    assert isinstance(mapped, AccessError)
    assert mapped.sqlstate == "0L000"
    assert isinstance(mapped, PermissionError)
    assert str(mapped).startswith(
        "Cannot grant SELECT on table 'app.items': you must be the owner or have GRANT OPTION "
        "for these privileges. Original error: grantor must be current user"
    )


def test_unmapped_errors_pass_through(client: LakebaseClient) -> None:
    with pytest.raises(psycopg.errors.SyntaxError):
        client.execute("SELEC 1")
