"""`lakebase-memory doctor`: each troubleshooting row of the seed, induced for real (the local
Lakebase with the real databricks-sdk, or the embedded PostgreSQL), and the diagnosis it gets.

Statuses are written as one letter per check, in doctor's order:
configuration, authentication, instance, credential, login, schema, privileges, app resource;
P pass, F fail, S skipped, N not applicable.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from typer.testing import CliRunner

from lakebase_memory.cli.main import app
from lakebase_memory.database import MISSING_LAKEBASE_CONFIGURATION
from lakebase_memory.diagnosis import CHECKS
from lakebase_memory.local_lakebase import LocalLakebase, resources
from lakebase_memory.schema import MIGRATIONS, ensure_schema, missing_privileges
from test_lakebase_app import FOREIGN, LOCAL_TEXT, readme_grants, use_identity

runner = CliRunner()
LETTERS = {"pass": "P", "fail": "F", "skipped": "S", "not applicable": "N"}
SYMBOLS = {"pass": "✓", "fail": "✗", "skipped": "\u2013", "not applicable": "\u2013"}


@dataclass
class Outcome:
    exit_code: int
    checks: dict[str, dict[str, Any]]
    text: str

    @property
    def statuses(self) -> str:
        return "".join(LETTERS[self.checks[check.name]["status"]] for check in CHECKS)

    def failed(self, name: str) -> dict[str, Any]:
        check = self.checks[name]
        assert check["status"] == "fail", check
        return check


def doctor() -> Outcome:
    """Both output forms; they must agree on the exit status and on every check."""
    as_json = runner.invoke(app, ["doctor", "--json"])
    human = runner.invoke(app, ["doctor"])
    for result in (as_json, human):
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
    assert as_json.exit_code == human.exit_code
    checks = {item["check"]: item for item in json.loads(as_json.stdout)}
    assert list(checks) == [check.name for check in CHECKS]
    outcome = Outcome(as_json.exit_code, checks, human.stdout)
    _check_human_output(outcome)
    return outcome


def _check_human_output(outcome: Outcome) -> None:
    # The two runs may differ in timestamps (each mints its own credential), not in verdicts.
    lines = outcome.text.splitlines()
    for name, check in outcome.checks.items():
        assert any(line.startswith(f"{SYMBOLS[check['status']]} {name} ") for line in lines)
        if check["status"] == "fail":
            assert f"  fix: {check['fix']}" in lines
            for item in check["items"]:
                assert any(line.endswith(f"- {item}") for line in lines), item
    assert outcome.exit_code == (0 if "All checks passed." in lines else 1)


@pytest.fixture
def clean_env(monkeypatch, tmp_path) -> None:
    """No database or Databricks settings from this machine, and no dotenv files."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(FOREIGN):
            monkeypatch.delenv(name)


# --- the local Lakebase -------------------------------------------------------------------------


@dataclass
class World:
    """The local Lakebase, a fresh database on it, and the process environment of the app."""

    ll: LocalLakebase
    monkeypatch: pytest.MonkeyPatch
    set_token_ttl: Callable[[float], None]
    databases: list[str] = field(default_factory=list)

    def drop_databases(self) -> None:
        """Drop every database this world made."""
        with psycopg.connect(self.ll.admin_conninfo("postgres"), autocommit=True) as admin:
            for name in self.databases:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )

    def database(self) -> str:
        """A new database owned by the instance owner, so each case starts from nothing."""
        name = f"doctor_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.ll.admin_conninfo("postgres"), autocommit=True) as admin:
            admin.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(self.ll.owner)
                )
            )
        self.databases.append(name)
        return name

    def owner_sql(self, db: str, statement: str, params: tuple = ()) -> None:
        token = self.ll.issue_database_credential(self.ll.owner)
        with psycopg.connect(self.ll.conninfo(self.ll.owner, token, db), autocommit=True) as conn:
            conn.execute(statement.encode(), params)

    def setup_as_owner(self, db: str) -> None:
        token = self.ll.issue_database_credential(self.ll.owner)
        asyncio.run(ensure_schema(self.ll.conninfo(self.ll.owner, token, db)))

    def user(self, *, can_use: bool = True, role_in: str | None = None) -> str:
        name = self.ll.add_user(f"doctor-{uuid.uuid4().hex[:8]}@example.com").name
        if can_use:
            self.ll.grant_can_use(name)
        if role_in is not None:
            self.owner_sql(role_in, "CREATE EXTENSION IF NOT EXISTS databricks_auth")
            self.owner_sql(role_in, "SELECT databricks_create_role(%s, 'USER')", (name,))
        return name

    def run_as(self, token: str | None, db: str | None = None, **extra: str) -> None:
        env = {"LAKEBASE_INSTANCE_NAME": self.ll.instance_name, "PGPORT": str(self.ll.pg_port)}
        if db is not None:
            env["PGDATABASE"] = db
        use_identity(self.monkeypatch, self.ll, token, **(env | extra))

    def run_as_app(self, app_name: str, db: str | None = None, **extra: str) -> None:
        """The environment the platform gives the app (app_env), plus app.yaml's lines."""
        env = self.ll.app_env(app_name)
        use_identity(self.monkeypatch, self.ll, None, DATABRICKS_AUTH_TYPE="oauth-m2m",
                     **{k: v for k, v in env.items() if k != "DATABRICKS_HOST"})  # fmt: skip
        for name, value in extra.items():
            self.monkeypatch.setenv(name, value)
        if db is not None:
            self.monkeypatch.setenv("PGDATABASE", db)


@pytest.fixture
def world(local_lakebase: LocalLakebase, monkeypatch, tmp_path, short_token_ttl) -> Iterator[World]:
    monkeypatch.chdir(tmp_path)
    made = World(local_lakebase, monkeypatch, short_token_ttl)
    yield made
    made.drop_databases()


@dataclass
class Expect:
    statuses: str
    failing: dict[str, tuple[list[str], list[str]]]  # check -> (in its detail, in its fix)
    items: dict[str, list[str]] = field(default_factory=dict)  # check -> exactly these items


def missing_configuration(w: World) -> Expect:
    w.monkeypatch.setenv("DATABRICKS_APP_NAME", "memory-app")  # and nothing else at all
    for name in list(os.environ):
        if name.startswith(FOREIGN) and name != "DATABRICKS_APP_NAME":
            w.monkeypatch.delenv(name)
    deployed = "The App Service Principal for 'memory-app' may not have access."
    return Expect("FSSSSSSF", {
        "configuration": ([MISSING_LAKEBASE_CONFIGURATION], ["App resources > Add resource"]),
        "app resource": ([deployed, "no database resource"], ["Can connect and create"]),
    })  # fmt: skip


def wrong_instance(w: World) -> Expect:
    w.run_as(w.ll.owner_token, LAKEBASE_INSTANCE_NAME="no-such-instance")
    return Expect("PPFSSSSN", {"instance": (
        ["Failed to connect to Lakebase instance 'no-such-instance'. " + LOCAL_TEXT,
         "no Lakebase instance named 'no-such-instance'"],
        ["Set LAKEBASE_INSTANCE_NAME", f"this workspace has: {w.ll.instance_name}"],
    )})  # fmt: skip


def stopped_instance(w: World) -> Expect:
    def stopped(*args: Any) -> dict[str, Any]:
        return {**running(*args), "state": "STOPPED", "effective_stopped": True}

    running = resources.instance
    w.monkeypatch.setattr(resources, "instance", stopped)  # what the control plane answers
    w.run_as(w.ll.owner_token)
    return Expect("PPFSSSSN", {"instance": (
        [LOCAL_TEXT, "the instance is STOPPED, not AVAILABLE"],
        [f"Start '{w.ll.instance_name}' in the Databricks UI", "AVAILABLE"],
    )})  # fmt: skip


def bad_token(w: World) -> Expect:
    w.run_as("dapi-not-a-real-token")
    return Expect("PFSSSSSN", {"authentication": (
        [LOCAL_TEXT, "PermissionDenied: Invalid access token.",
         f"configuration used: host={w.ll.host}, auth_type=pat"],
        ["DATABRICKS_TOKEN is invalid, expired or revoked", "databricks auth login"],
    )})  # fmt: skip


def no_can_use(w: World) -> Expect:
    user = w.user(can_use=False)
    w.run_as(w.ll.identity(user).token)
    return Expect("PPPFSSSN", {"credential": (
        [LOCAL_TEXT, "could not mint a database credential", "CAN USE"],
        [f"give {user} CAN USE"],
    )})  # fmt: skip


def expired_credential(w: World) -> Expect:
    w.set_token_ttl(0)  # every credential minted from now on is expired when it arrives
    w.run_as(w.ll.owner_token)
    return Expect("PPPFSSSN", {"credential": (
        [LOCAL_TEXT, "the database credential expired before it could be used"],
        ["Synchronise this machine's clock", "--token-ttl"],
    )})  # fmt: skip


def no_role(w: World) -> Expect:
    user = w.user()
    w.run_as(w.ll.identity(user).token, w.database())
    return Expect("PPPPFSSN", {"login": (
        [LOCAL_TEXT, f'PostgreSQL role "{user}" does not exist on the instance'],
        [f"lakebase-memory grant {user} --type USER",
         f"SELECT databricks_create_role('{user}', 'USER');"],
    )})  # fmt: skip


def no_grants(w: World) -> Expect:
    db = w.database()
    w.setup_as_owner(db)
    user = w.user(role_in=db)
    w.run_as(w.ll.identity(user).token, db)
    expected = _missing_as(w.ll, user, db)  # the single source of truth, asked directly
    assert "USAGE on schema ai_chatbot" in expected
    assert 'DELETE on public."checkpoints"' in expected
    return Expect(
        "PPPPPPFN",
        {"privileges": ([f"role {user} lacks {len(expected)} privilege(s)"],
                        [f"lakebase-memory grant {user}", f"owner ({w.ll.owner})", "--sql"])},
        {"privileges": expected},
    )  # fmt: skip


def missing_tables(w: World) -> Expect:
    w.run_as(w.ll.owner_token, w.database())
    return Expect("PPPPPFSN", {"schema": (
        ["the app's tables are not set up"],
        ["Run `lakebase-memory setup` (role owner@example.com may create them)"],
    )})  # fmt: skip


def pending_migration(w: World) -> Expect:
    db = w.database()
    w.setup_as_owner(db)
    latest = MIGRATIONS[-1]
    w.owner_sql(db, "DELETE FROM drizzle.__drizzle_migrations WHERE hash = %s", (latest.hash,))
    w.run_as(w.ll.owner_token, db)
    return Expect(
        "PPPPPFPN",
        {"schema": (["1 migration(s) pending"], ["lakebase-memory setup"])},
        {"schema": [f"pending migration {latest.name}"]},
    )


def deployed_without_resource(w: World) -> Expect:
    app_name = f"app-{uuid.uuid4().hex[:6]}"
    principal = w.ll.add_app(app_name).name
    # app.yaml names the instance; the local instance's port stands in for 5432.
    w.run_as_app(app_name, LAKEBASE_INSTANCE_NAME=w.ll.instance_name, PGPORT=str(w.ll.pg_port))
    deployed = (
        f"Failed to connect to Lakebase instance '{w.ll.instance_name}'. The App Service "
        f"Principal for '{app_name}' may not have access."
    )
    return Expect("PPPPFSSF", {
        "login": ([deployed, f'role "{principal}" does not exist'],
                  [f"Add the instance to app '{app_name}' as a database resource"]),
        "app resource": ([deployed, "App resources > Add resource", "no database resource"],
                         [f"lakebase-memory grant {principal}", "databricks bundle deploy"]),
    })  # fmt: skip


def identity_mismatch(w: World) -> Expect:
    app_name = f"app-{uuid.uuid4().hex[:6]}"
    principal = w.ll.add_app(app_name).name
    w.ll.attach_app_resource(app_name)
    # A personal token left in app.yaml: the SDK is the owner, PGUSER is the app's principal.
    w.run_as_app(app_name, DATABRICKS_TOKEN=w.ll.owner_token, DATABRICKS_AUTH_TYPE="pat")
    return Expect("PFSSSSSP", {"authentication": (
        [f"the SDK authenticates as {w.ll.owner}, but PGUSER is {principal}"],
        ["Remove DATABRICKS_TOKEN and DATABRICKS_CONFIG_PROFILE from app.yaml"],
    )})  # fmt: skip


def _missing_as(ll: LocalLakebase, user: str, db: str) -> list[str]:
    async def ask() -> list[str]:
        conninfo = ll.conninfo(user, ll.issue_database_credential(user), db)
        async with await psycopg.AsyncConnection.connect(conninfo, row_factory=dict_row) as conn:
            return await missing_privileges(conn, "public")

    return asyncio.run(ask())


FAULTS = [
    missing_configuration,
    wrong_instance,
    stopped_instance,
    bad_token,
    no_can_use,
    expired_credential,
    no_role,
    no_grants,
    missing_tables,
    pending_migration,
    deployed_without_resource,
    identity_mismatch,
]


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.__name__ for fault in FAULTS])
def test_doctor_diagnoses_each_fault(world: World, fault: Callable[[World], Expect]) -> None:
    expect = fault(world)
    outcome = doctor()
    assert outcome.exit_code == 1
    assert outcome.statuses == expect.statuses, outcome.checks
    for name, (in_detail, in_fix) in expect.failing.items():
        check = outcome.failed(name)
        for text in in_detail:
            assert text in check["detail"], (name, text, check["detail"])
        for text in in_fix:
            assert text in check["fix"], (name, text, check["fix"])
    for name, items in expect.items.items():
        assert outcome.checks[name]["items"] == items
    for name, check in outcome.checks.items():  # every failure names a fix
        assert check["status"] != "fail" or check["fix"], name
        # The SDK's own dump of its configuration is left out: doctor says which one it used.
        assert "Config: " not in check["detail"], (name, check["detail"])


def test_the_owner_passes_after_setup(world: World) -> None:
    db = world.database()
    world.run_as(world.ll.owner_token, db)
    assert doctor().statuses == "PPPPPFSN"
    setup = runner.invoke(app, ["setup"])
    assert setup.exit_code == 0, setup.output
    assert '+ table ai_chatbot."Chat"' in setup.output
    assert "owned by owner@example.com" in setup.output
    outcome = doctor()
    assert outcome.exit_code == 0 and outcome.statuses == "PPPPPPPN", outcome.checks
    assert outcome.checks["authentication"]["detail"].startswith(world.ll.owner)
    assert "is AVAILABLE" in outcome.checks["instance"]["detail"]
    assert "; TLS)" in outcome.checks["login"]["detail"]
    assert outcome.text.splitlines()[-1] == "All checks passed."


def test_a_deployed_app_with_its_resource_and_grants_passes(world: World) -> None:
    db = world.database()
    world.setup_as_owner(db)
    app_name = f"app-{uuid.uuid4().hex[:6]}"
    principal = world.ll.add_app(app_name).name
    world.ll.attach_app_resource(app_name)
    for statement in readme_grants(principal, world.ll.owner):
        world.owner_sql(db, statement)
    world.run_as_app(app_name, db)  # only what the platform injects (and the test database)
    outcome = doctor()
    assert outcome.exit_code == 0 and outcome.statuses == "PPPPPPPP", outcome.checks
    assert f"PGUSER={principal}" in outcome.checks["app resource"]["detail"]
    assert outcome.checks["authentication"]["detail"].startswith(principal)


def test_grant_makes_a_failing_principal_pass(world: World) -> None:
    """The issue's loop: doctor lists what is missing, `grant` (run by the owner) adds it."""
    db = world.database()
    world.setup_as_owner(db)
    user = world.user(role_in=db)
    world.run_as(world.ll.identity(user).token, db)
    before = runner.invoke(app, ["doctor", "--json"])
    assert before.exit_code == 1
    assert {c["check"]: c["status"] for c in json.loads(before.stdout)}["privileges"] == "fail"
    world.run_as(world.ll.owner_token, db)
    granted = runner.invoke(app, ["grant", user])
    assert granted.exit_code == 0, granted.output
    world.run_as(world.ll.identity(user).token, db)
    after = runner.invoke(app, ["doctor"])
    assert after.exit_code == 0, after.output
    assert f"✓ privileges      role {user} has every privilege the app needs" in after.stdout


def test_a_fixed_lakebase_credential_in_database_url_that_expired(world: World) -> None:
    ll = world.ll
    token = ll.issue_database_credential(ll.owner, ttl=0)
    world.monkeypatch.setenv("DATABASE_URL", ll.conninfo(ll.owner, token))
    outcome = doctor()
    assert outcome.statuses == "PNNNFSSN"
    login = outcome.failed("login")
    assert "is a fixed Lakebase database credential, which expired at" in login["detail"]
    assert "set LAKEBASE_INSTANCE_NAME" in login["fix"]


def test_a_lakebase_url_without_tls(world: World) -> None:
    ll = world.ll
    url = ll.conninfo(ll.owner, ll.issue_database_credential(ll.owner)) + " sslmode=disable"
    world.monkeypatch.setenv("DATABASE_URL", url)
    outcome = doctor()
    assert outcome.statuses == "PNNNFSSN"
    assert "accepts only SSL connections" in outcome.failed("login")["detail"]
    assert "sslmode=require" in outcome.failed("login")["fix"]


# --- plain PostgreSQL ---------------------------------------------------------------------------


def test_plain_postgresql_passes_after_setup(clean_env, monkeypatch, database: str) -> None:
    monkeypatch.setenv("DATABASE_URL", database)
    assert runner.invoke(app, ["setup"]).exit_code == 0
    outcome = doctor()
    assert outcome.exit_code == 0 and outcome.statuses == "PNNNPPPN", outcome.checks
    assert "not a Lakebase target" in outcome.checks["authentication"]["detail"]


def test_plain_postgresql_role_without_grants(clean_env, monkeypatch, database: str) -> None:
    role = f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    asyncio.run(ensure_schema(database))  # the tables belong to the superuser
    monkeypatch.setenv("DATABASE_URL", make_conninfo(database, user=role))
    outcome = doctor()
    assert outcome.statuses == "PNNNPPFN", outcome.checks
    privileges = outcome.failed("privileges")

    async def ask() -> list[str]:
        conninfo = make_conninfo(database, user=role)
        async with await psycopg.AsyncConnection.connect(conninfo, row_factory=dict_row) as conn:
            return await missing_privileges(conn, "public")

    assert privileges["items"] == asyncio.run(ask())
    assert "USAGE on schema ai_chatbot" in privileges["items"]
    assert f"`lakebase-memory grant {role}`" in privileges["fix"]
    assert "migration state is not readable" in outcome.checks["schema"]["detail"]


def hardened(database: str, revoke: str) -> str:
    """A new role on a server where a DBA revoked from PUBLIC something every role may do."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_schema(database))
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        admin.execute(revoke.encode())
    return role


def refused_fix(role: str, restore: str) -> str:
    return (
        f"Role {role} was refused a query this check makes, which every role may run unless a "
        f"DBA revoked it: as a superuser, {restore}, then run `lakebase-memory doctor` again."
    )


def test_a_check_whose_catalog_query_is_refused(clean_env, monkeypatch, database: str) -> None:
    """The schema and privileges checks' own catalog queries raise: each says so, with the SQL
    that gives the catalog table back; run as printed, doctor gets to the real diagnosis."""
    role = hardened(database, "REVOKE SELECT ON pg_catalog.pg_namespace FROM PUBLIC")
    monkeypatch.setenv("DATABASE_URL", make_conninfo(database, user=role))
    outcome = doctor()
    assert outcome.exit_code == 1 and outcome.statuses == "PNNNPFFN", outcome.checks
    for name in ("schema", "privileges"):
        check = outcome.failed(name)
        assert check["detail"] == (
            "the check itself failed: InsufficientPrivilege: permission denied for table "
            "pg_namespace"
        )
        restore = f'run `GRANT SELECT ON pg_namespace TO "{role}"`'
        assert check["fix"] == refused_fix(role, restore)
    printed = outcome.failed("schema")["fix"].split("`")[1]
    with psycopg.connect(database, autocommit=True) as admin:  # the fix, as printed
        admin.execute(printed.encode())
    after = doctor()
    assert after.statuses == "PNNNPPFN", after.checks  # now the real diagnosis: no grants yet
    assert f"`lakebase-memory grant {role}`" in after.failed("privileges")["fix"]


def test_a_check_whose_function_is_refused(clean_env, monkeypatch, database: str) -> None:
    """The privileges check's function call raises: no exact SQL to print, what to give back."""
    revoke = "REVOKE EXECUTE ON FUNCTION has_database_privilege(name, text, text) FROM PUBLIC"
    role = hardened(database, revoke)  # in this test's database only (pg_proc is per database)
    monkeypatch.setenv("DATABASE_URL", make_conninfo(database, user=role))
    outcome = doctor()
    assert outcome.exit_code == 1 and outcome.statuses == "PNNNPPFN", outcome.checks
    check = outcome.failed("privileges")
    assert check["detail"] == (
        "the check itself failed: InsufficientPrivilege: permission denied for function "
        "has_database_privilege"
    )
    restore = "give back what the error names (a catalog table's SELECT, a function's EXECUTE)"
    assert check["fix"] == refused_fix(role, restore)


def test_plain_postgresql_unknown_role(clean_env, monkeypatch, database: str) -> None:
    monkeypatch.setenv("DATABASE_URL", make_conninfo(database, user="nobody_here"))
    outcome = doctor()
    assert outcome.statuses == "PNNNFSSN"
    assert 'role "nobody_here" does not exist' in outcome.failed("login")["detail"]
    assert 'CREATE ROLE "nobody_here" LOGIN' in outcome.failed("login")["fix"]


def test_contradicting_settings(clean_env, monkeypatch, database: str) -> None:
    monkeypatch.setenv("DATABASE_URL", database)
    monkeypatch.setenv("LAKEBASE_INSTANCE_NAME", "somewhere")
    outcome = doctor()
    assert outcome.statuses == "FSSSSSSN"
    assert "Remove DATABASE_URL" in outcome.failed("configuration")["fix"]
