"""`lakebase-memory grant` end to end, on plain PostgreSQL and on the local Lakebase: a fresh
principal cannot run the app, `grant` fixes that, the app then runs a conversation as it, and
it still cannot do what it was not granted; `--sql` run with psql gives the same privileges;
`--dry-run` changes nothing; an app name resolves to its service principal client id."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool
from typer.testing import CliRunner

from conftest import answer_text, make_settings, say
from lakebase_memory import LakebaseClient
from lakebase_memory.access import IdentityType, PrivilegeReport
from lakebase_memory.access.app_plan import Principal
from lakebase_memory.access.principal import PrincipalError, resolve_principal
from lakebase_memory.cli.main import app
from lakebase_memory.errors import DatabaseUnavailableError
from lakebase_memory.local_lakebase import LocalLakebase
from lakebase_memory.schema import ensure_schema
from lakebase_memory.server.runtime import AppRuntime
from test_lakebase_app import FOREIGN, lakebase_settings, use_identity

runner = CliRunner()
PSQL = "/usr/bin/psql"
# What the app must not be able to do with only what `grant` gives.
FORBIDDEN = (
    "DROP TABLE public.checkpoints",
    "CREATE TABLE public.mine (id int)",
    'TRUNCATE ai_chatbot."Vote"',
    'ALTER TABLE ai_chatbot."Chat" ADD COLUMN extra int',
    "CREATE SCHEMA mine",
)


def grant(*args: str):
    return runner.invoke(app, ["grant", *args])


def report(conninfo: str, role: str) -> PrivilegeReport:
    with ConnectionPool(conninfo, kwargs={"autocommit": True}) as pool:
        return LakebaseClient(pool=pool).privileges_of(role)


def psql(conninfo: str, script: str, tmp_path: Path) -> None:
    path = tmp_path / f"grant-{uuid.uuid4().hex[:6]}.sql"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    done = subprocess.run(
        [PSQL, conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "has what the app needs" in done.stderr  # the script's closing NOTICE


def assert_cannot_overreach(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement in FORBIDDEN:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement.encode())


def converse(server) -> None:
    thread = f"granted-{uuid.uuid4()}"
    with server.client(headers={"X-Forwarded-Email": "someone@example.com"}) as client:
        say(client, "first, as the granted principal", thread)
        assert "You have sent 2" in answer_text(say(client, "second", thread))
        assert client.delete(f"/api/threads/{thread}").status_code == 204  # DELETE granted


# --- plain PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture
def postgres_env(monkeypatch, tmp_path: Path, database: str) -> Iterator[str]:
    """The owner's configuration: DATABASE_URL as the superuser of a fresh database."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(FOREIGN):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", database)
    yield database


def test_grant_on_plain_postgres(postgres_env: str, serve) -> None:
    database = postgres_env
    asyncio.run(ensure_schema(database))  # the owner ran `lakebase-memory setup`
    role = f"app role {uuid.uuid4().hex[:6]}"
    as_app = make_conninfo(database, user=role)
    with pytest.raises(DatabaseUnavailableError, match=f'role "{role}" does not exist'):
        asyncio.run(AppRuntime.start(make_settings(as_app)))

    result = grant(role)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == f"principal: {role} (user; as given)"
    database_name = psycopg.conninfo.conninfo_to_dict(database)["dbname"]
    assert lines[2:] == [
        f'✓ created role "{role}" (plain PostgreSQL: no databricks_auth extension)',
        f"✓ CONNECT on database {database_name}",
        "✓ USAGE on schemas public, ai_chatbot, drizzle",
        "✓ SELECT, INSERT, UPDATE, DELETE on 14 tables: public.checkpoint_migrations, "
        "public.checkpoints, public.checkpoint_blobs, public.checkpoint_writes, "
        "public.store_migrations, public.store, ai_chatbot.Chat, ai_chatbot.Message, "
        "ai_chatbot.Vote, ai_chatbot.checkpoint_threads, ai_chatbot.checkpoint_messages, "
        "ai_chatbot.responses, ai_chatbot.response_events, drizzle.__drizzle_migrations",
        "✓ USAGE on sequence drizzle.__drizzle_migrations_id_seq",
        "✓ SELECT, INSERT, UPDATE, DELETE on tables postgres creates later in public, "
        "ai_chatbot, drizzle (default privileges)",
        "✓ USAGE on sequences postgres creates later in drizzle (default privileges)",
        f'✓ checked: "{role}" has every privilege the app needs',
    ]

    converse(serve(make_settings(as_app)))
    assert_cannot_overreach(as_app)
    before = report(database, role)
    again = grant(role)  # idempotent
    assert again.exit_code == 0 and f'✓ role "{role}" exists' in again.stdout
    assert report(database, role) == before


def test_sql_script_with_psql_gives_what_grant_gives(postgres_env: str, tmp_path: Path) -> None:
    database = postgres_env
    asyncio.run(ensure_schema(database))
    by_grant, by_sql = (f"parity {uuid.uuid4().hex[:6]} {n}" for n in ("cli", "sql"))
    assert grant(by_grant).exit_code == 0
    result = grant(by_sql, "--sql")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"-- lakebase-memory grant {by_sql}:")
    psql(database, result.stdout, tmp_path)
    psql(database, result.stdout, tmp_path)  # may be run again
    expected = report(database, by_grant)
    assert expected.grants  # something to compare
    assert report(database, by_sql).summary() == expected.summary()
    assert report(database, by_sql).can_login


def test_dry_run_changes_nothing(postgres_env: str) -> None:
    database = postgres_env  # no setup: the schemas do not exist yet
    role = f"dry_{uuid.uuid4().hex[:6]}"
    schemas = "SELECT array_agg(nspname ORDER BY nspname) FROM pg_namespace"
    with psycopg.connect(database) as conn:
        before = conn.execute(schemas).fetchone()
    result = grant(role, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "(dry run: nothing is changed)" in result.stdout
    assert f'CREATE ROLE "{role}" LOGIN;' in result.stdout
    assert 'CREATE SCHEMA IF NOT EXISTS "ai_chatbot";' in result.stdout
    assert f'GRANT USAGE ON SCHEMA "drizzle" TO "{role}";' in result.stdout
    with psycopg.connect(database) as conn:
        assert conn.execute(schemas).fetchone() == before
    assert not report(database, role).exists

    asyncio.run(ensure_schema(database))
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN; GRANT USAGE ON SCHEMA ai_chatbot TO "{role}"')
    snapshot = report(database, role)
    result = grant(role, "--dry-run")
    assert result.exit_code == 0 and f'role "{role}" exists: kept' in result.stdout
    assert report(database, role) == snapshot


def test_a_step_that_fails_says_why_and_what_to_do(postgres_env: str, monkeypatch) -> None:
    database = postgres_env
    asyncio.run(ensure_schema(database))
    weak = f"weak_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{weak}" LOGIN CREATEROLE')
    monkeypatch.setenv("DATABASE_URL", make_conninfo(database, user=weak))
    result = grant(f"target_{uuid.uuid4().hex[:6]}")
    assert result.exit_code == 1
    assert "✓ created role" in result.stdout
    assert "✗ CONNECT on database" not in result.stdout  # PUBLIC has CONNECT: nothing to refuse
    failed = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    assert failed and failed[0].startswith("✗ USAGE on schemas")
    assert "  why: Insufficient privileges to grant USAGE on schema 'ai_chatbot'" in result.stdout
    assert "  fix: Run `lakebase-memory grant` as the owner of the app's tables" in result.stdout


def refused_for_yourself(role: str) -> str:
    return (
        f"error: nothing granted: {role} is the role you are connected as; grant gives what the "
        "app needs to the role the app logs in as, which must be another one. Name the app's "
        "principal (its app name, service principal client id, email or role) and run grant "
        "with the configuration of the app's tables' owner (the identity that ran "
        "`lakebase-memory setup`).\n"
    )


def test_granting_your_own_role_is_refused(postgres_env: str) -> None:
    database = postgres_env
    asyncio.run(ensure_schema(database))
    me = str(psycopg.conninfo.conninfo_to_dict(database)["user"])
    before = report(database, me)
    for extra in ([], ["--dry-run"]):
        result = grant(me, *extra)
        assert result.exit_code == 1, result.output
        assert result.stderr == refused_for_yourself(me)
        assert result.stdout.splitlines()[1] == f"principal: {me} (user; as given)"
        assert "✓" not in result.stdout and "plan for" not in result.stdout
    assert report(database, me) == before


# --- the local Lakebase --------------------------------------------------------------------------


def owner_env(monkeypatch, ll: LocalLakebase) -> None:
    use_identity(
        monkeypatch,
        ll,
        ll.owner_token,
        LAKEBASE_INSTANCE_NAME=ll.instance_name,
        PGPORT=str(ll.pg_port),
    )


def app_env(monkeypatch, ll: LocalLakebase, app_name: str) -> None:
    env = ll.app_env(app_name)
    use_identity(
        monkeypatch,
        ll,
        None,
        DATABRICKS_AUTH_TYPE="oauth-m2m",
        **{k: v for k, v in env.items() if k != "DATABRICKS_HOST"},
    )


@pytest.fixture
def lakebase(monkeypatch, local_lakebase: LocalLakebase, tmp_path: Path) -> LocalLakebase:
    ll = local_lakebase
    monkeypatch.chdir(tmp_path)
    asyncio.run(ensure_schema(ll.conninfo(ll.owner, ll.issue_database_credential(ll.owner))))
    return ll


def test_grant_an_app_by_name_on_lakebase(monkeypatch, lakebase: LocalLakebase, serve) -> None:
    ll = lakebase
    app_name = f"grant-{uuid.uuid4().hex[:6]}"
    principal = ll.add_app(app_name)  # may mint credentials, has no Postgres role yet
    app_env(monkeypatch, ll, app_name)
    with pytest.raises(DatabaseUnavailableError, match=f'role "{principal.name}" does not exist'):
        asyncio.run(AppRuntime.start(lakebase_settings(ll, databricks_app_name=app_name)))

    owner_env(monkeypatch, ll)
    result = grant(app_name)
    assert result.exit_code == 0, result.output
    assert (
        f"principal: {principal.name} (service principal; service_principal_client_id of app "
        f"'{app_name}'; not service_principal_id {principal.scim_id}, its numeric SCIM id)"
    ) in result.stdout
    assert f'✓ created role "{principal.name}" (databricks_create_role, SERVICE_PRINCIPAL)' in (
        result.stdout
    )
    assert f"✓ SELECT, INSERT, UPDATE, DELETE on tables {ll.owner} creates later" in result.stdout
    assert f'✓ checked: "{principal.name}" has every privilege the app needs' in result.stdout

    app_env(monkeypatch, ll, app_name)
    converse(serve(lakebase_settings(ll, databricks_app_name=app_name)))
    token = ll.issue_database_credential(principal.name)
    assert_cannot_overreach(ll.conninfo(principal.name, token))


def test_an_app_granting_itself_is_refused(monkeypatch, lakebase: LocalLakebase) -> None:
    """`grant <app>` run with the app's own configuration instead of the owner's."""
    ll = lakebase
    app_name = f"self-{uuid.uuid4().hex[:6]}"
    principal = ll.add_app(app_name)
    ll.attach_app_resource(app_name)  # its role exists and may log in
    owner_env(monkeypatch, ll)
    with LakebaseClient(instance_name=ll.instance_name) as client:
        before = client.privileges_of(principal.name)
    app_env(monkeypatch, ll, app_name)
    result = grant(app_name)
    assert result.exit_code == 1, result.output
    assert f"principal: {principal.name} (service principal; service_principal_client_id" in (
        result.stdout
    )
    assert result.stderr == refused_for_yourself(principal.name)
    owner_env(monkeypatch, ll)
    with LakebaseClient(instance_name=ll.instance_name) as client:
        assert client.privileges_of(principal.name) == before


def test_sql_script_on_lakebase_with_psql(monkeypatch, lakebase: LocalLakebase, tmp_path) -> None:
    ll = lakebase
    first, second = (f"sql-{uuid.uuid4().hex[:6]}" for _ in range(2))
    by_grant, by_sql = ll.add_app(first), ll.add_app(second)
    owner_env(monkeypatch, ll)
    assert grant(first).exit_code == 0
    # The seed's trap: the numeric service_principal_id, resolved to the client id.
    result = grant(by_sql.scim_id, "--sql")
    assert result.exit_code == 0, result.output
    assert f"app_role      text   := '{by_sql.name}';" in result.stdout
    assert "you gave its numeric service_principal_id" in result.stderr
    owner = ll.conninfo(ll.owner, ll.issue_database_credential(ll.owner))
    psql(owner, result.stdout, tmp_path)
    with LakebaseClient(instance_name=ll.instance_name) as client:
        expected = client.privileges_of(by_grant.name)
        assert expected.grants
        assert client.privileges_of(by_sql.name).summary() == expected.summary()


def test_allow_create_lets_the_app_create_its_own_tables(postgres_env: str, serve) -> None:
    database = postgres_env  # nobody ran setup
    role = f"creator_{uuid.uuid4().hex[:6]}"
    result = grant(role, "--allow-create")
    assert result.exit_code == 0, result.output
    assert "✓ USAGE, CREATE on schemas public, ai_chatbot, drizzle" in result.stdout
    assert "note: some of the app's tables do not exist yet" in result.stdout
    as_app = make_conninfo(database, user=role)
    converse(serve(make_settings(as_app)))  # it created the tables, and owns them
    with psycopg.connect(database) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'Chat'")
        assert owner.fetchone() == (role,)


def test_principals_are_resolved(monkeypatch, lakebase: LocalLakebase) -> None:
    ll = lakebase
    assert resolve_principal(" ada@example.com ", None, None) == Principal(
        "ada@example.com", IdentityType.USER, "as given"
    )
    assert resolve_principal("data team", IdentityType.GROUP, None).type is IdentityType.GROUP
    assert resolve_principal("app_user", None, None).type is IdentityType.USER  # plain PostgreSQL
    with pytest.raises(PrincipalError, match="numeric service_principal_id"):
        resolve_principal("1234567890", None, None)
    owner_env(monkeypatch, ll)
    result = grant("no-such-app", "--sql")
    assert result.exit_code == 1
    assert "'no-such-app' is neither a service principal's client id" in result.stderr
    assert "--type GROUP" in result.stderr
