"""The app on the Lakebase path, against the local Lakebase, with the real databricks-sdk."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from conftest import ROOT, answer_text, free_port, say
from lakebase_memory.config import Settings
from lakebase_memory.database import check_login, open_target
from lakebase_memory.database.lakebase import LakebaseError
from lakebase_memory.errors import ConfigurationError, DatabaseUnavailableError, SchemaSetupError
from lakebase_memory.local_lakebase import LocalLakebase
from lakebase_memory.schema import ensure_schema
from lakebase_memory.server.runtime import AppRuntime

LOCAL_TEXT = "Please verify:\n1. The instance name is correct"
FOREIGN = ("DATABRICKS_", "LAKEBASE_", "PG", "DATABASE_URL")


def use_identity(monkeypatch, ll: LocalLakebase, token: str | None = None, **extra: str) -> None:
    """The process environment of an app running as this identity (REST token, PAT auth)."""
    for name in list(os.environ):
        if name.startswith(FOREIGN):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_HOST", ll.host)
    if token is not None:
        monkeypatch.setenv("DATABRICKS_TOKEN", token)
        monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def lakebase_settings(ll: LocalLakebase, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model_backend": "echo",
        "lakebase_instance_name": ll.instance_name,
        "pgport": str(ll.pg_port),
        "db_pool_timeout": 5.0,
        "db_connect_timeout": 5,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def owner(monkeypatch, local_lakebase: LocalLakebase) -> LocalLakebase:
    use_identity(monkeypatch, local_lakebase, local_lakebase.owner_token)
    return local_lakebase


def owner_sql(ll: LocalLakebase, statement: str, params: tuple = ()) -> None:
    """Run SQL as the instance owner, through the TLS port with a database credential."""
    token = ll.issue_database_credential(ll.owner)
    with psycopg.connect(ll.conninfo(ll.owner, token), autocommit=True) as conn:
        conn.execute(statement.encode(), params)


def test_a_conversation_on_lakebase(owner: LocalLakebase, serve) -> None:
    server = serve(lakebase_settings(owner))
    thread = f"lb-{uuid.uuid4()}"
    with server.client() as client:
        say(client, "Stored in Lakebase.", thread)
        reply = say(client, "Where?", thread)
        info = client.get("/agent/info").json()["memory"]
    assert 'the first was: "Stored in Lakebase."' in answer_text(reply)
    assert info["database"] == "lakebase"
    assert f"instance '{owner.instance_name}'" in info["location"]
    assert f"as {owner.owner}" in info["location"]
    runtime = server.app.state.runtime
    assert runtime.target.lakebase.host == owner.pg_host
    assert "sslmode=require" in runtime.target.conninfo
    assert "password" not in runtime.target.conninfo  # minted per login, never stored


def test_the_instance_may_be_given_by_its_host(owner: LocalLakebase, serve) -> None:
    server = serve(lakebase_settings(owner, lakebase_instance_name=owner.pg_host))
    with server.client() as client:
        assert "You have sent 1 message" in answer_text(say(client, "by host", f"h-{uuid.uuid4()}"))
    assert server.app.state.runtime.target.lakebase.instance_name == owner.instance_name


@pytest.mark.parametrize("by", ["endpoint", "project and branch"])
def test_autoscaling(owner: LocalLakebase, serve, by: str) -> None:
    if by == "endpoint":
        settings = lakebase_settings(owner, lakebase_instance_name=None,
                                     lakebase_autoscaling_endpoint=owner.endpoint_name)  # fmt: skip
    else:
        settings = lakebase_settings(
            owner, lakebase_instance_name=None, lakebase_autoscaling_project=owner.project,
            lakebase_autoscaling_branch=owner.branch,
        )  # fmt: skip
    server = serve(settings)
    thread = f"as-{uuid.uuid4()}"
    with server.client() as client:
        say(client, "autoscaling one", thread)
        assert "You have sent 2" in answer_text(say(client, "two", thread))
    assert server.app.state.runtime.target.lakebase.endpoint == owner.endpoint_name


def test_it_keeps_working_across_token_expiries(owner: LocalLakebase, serve) -> None:
    owner.token_ttl = 2.0
    try:
        server = serve(lakebase_settings(owner, db_pool_max_idle=60))
        connector = server.app.state.runtime.target.lakebase
        pool = server.app.state.runtime.pool
        assert pool.max_lifetime < 2.0  # connections are recycled before the token lifetime
        thread = f"ttl-{uuid.uuid4()}"
        tokens = set()
        with server.client() as client:
            for turn in range(7):  # about 8 s: several expiries
                reply = say(client, f"turn {turn}", thread)
                assert f"You have sent {turn + 1}" in answer_text(reply)
                tokens.add(connector._credential.token)
                time.sleep(1.2)
        assert len(tokens) >= 3  # renewed before expiry, again and again
    finally:
        owner.token_ttl = 3600.0


def test_connections_the_server_drops_are_replaced(owner: LocalLakebase, serve) -> None:
    server = serve(lakebase_settings(owner))
    thread = f"idle-{uuid.uuid4()}"
    with server.client() as client:
        say(client, "before", thread)
        with psycopg.connect(owner.admin_conninfo(), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'lakebase-memory'"
            ).fetchone()
        assert killed and killed[0] > 0
        # The next request comes later than the pool's "just used" window (20 ms), as any
        # real one does; the kill notice also travels through the proxy meanwhile.
        time.sleep(0.1)
        assert "You have sent 2" in answer_text(say(client, "after", thread))


def test_a_wrong_instance_name(owner: LocalLakebase) -> None:
    with pytest.raises(LakebaseError) as error:
        open_target(lakebase_settings(owner, lakebase_instance_name="no-such-instance"))
    text = str(error.value)
    assert text.startswith(
        "Failed to connect to Lakebase instance 'no-such-instance'. " + LOCAL_TEXT
    )
    assert "Cause: no Lakebase instance named 'no-such-instance'" in text


def test_a_host_that_is_no_instance_of_the_workspace(owner: LocalLakebase) -> None:
    elsewhere = "instance-0123abcd.database.cloud.databricks.com"  # another workspace's
    with pytest.raises(LakebaseError) as error:
        asyncio.run(AppRuntime.start(lakebase_settings(owner, lakebase_instance_name=elsewhere)))
    assert str(error.value) == (
        f"Failed to connect to Lakebase instance '{elsewhere}'. {LOCAL_TEXT}\n"
        "2. You have the necessary permissions to access the instance\n"
        "3. Your Databricks authentication is configured correctly\n"
        f"Cause: no Lakebase instance in {owner.host} has the host {elsewhere}. Set "
        "LAKEBASE_INSTANCE_NAME to the instance's name (`databricks database "
        "list-database-instances`). Instances in this workspace: "
        f"{owner.instance_name} (host {owner.pg_host})."
    )


def start_failure(settings: Settings) -> str:
    """The error the app's start-up (as `start-app` runs it) fails with."""
    with pytest.raises(LakebaseError) as error:
        asyncio.run(AppRuntime.start(settings))
    return str(error.value)


def test_a_branch_without_a_read_write_endpoint(owner: LocalLakebase) -> None:
    branch = owner.add_branch(f"dev-{uuid.uuid4().hex[:6]}")  # made without compute
    settings = lakebase_settings(
        owner, lakebase_instance_name=None, lakebase_autoscaling_project=owner.project,
        lakebase_autoscaling_branch=branch.rsplit("/", 1)[1],
    )  # fmt: skip
    text = start_failure(settings)
    assert text.startswith(f"Failed to connect to Lakebase instance '{branch}'. {LOCAL_TEXT}")
    assert text.endswith(
        f"Cause: branch {branch} has no read-write endpoint, so there is nothing to connect to. "
        "Add a primary (read-write) compute to the branch in the Databricks UI (Lakebase > the "
        "project > the branch > Computes) or with `databricks postgres create-endpoint "
        f"{branch} <endpoint-id>` (endpoint_type ENDPOINT_TYPE_READ_WRITE), or set "
        "LAKEBASE_AUTOSCALING_ENDPOINT to the read-write endpoint of another branch."
    )


@pytest.mark.parametrize("by", ["endpoint", "project and branch"])
def test_an_autoscaling_name_that_does_not_exist(owner: LocalLakebase, by: str) -> None:
    """The hint is the command that lists the endpoints or branches, not the instances."""
    project = f"projects/{owner.project}"
    if by == "endpoint":
        name = f"{project}/branches/{owner.branch}/endpoints/nope"
        settings = lakebase_settings(owner, lakebase_instance_name=None,
                                     lakebase_autoscaling_endpoint=name)  # fmt: skip
        what, lists = "autoscaling endpoint", f"list-endpoints {project}/branches/{owner.branch}"
    else:
        name = f"{project}/branches/nope"
        settings = lakebase_settings(
            owner, lakebase_instance_name=None, lakebase_autoscaling_project=owner.project,
            lakebase_autoscaling_branch="nope",
        )  # fmt: skip
        what, lists = "autoscaling branch", f"list-branches {project}"
    text = start_failure(settings)
    assert text.startswith(f"Failed to connect to Lakebase instance '{name}'. {LOCAL_TEXT}")
    assert f"Cause: no {what} '{name}' in {owner.host} (" in text
    assert text.endswith(f"). Check the name: `databricks postgres {lists}`.")


@pytest.mark.parametrize("by", ["instance", "endpoint"])
def test_an_empty_database_credential(owner: LocalLakebase, empty_credentials, by: str) -> None:
    if by == "instance":
        settings, name = lakebase_settings(owner), owner.instance_name
    else:
        name = owner.endpoint_name
        settings = lakebase_settings(owner, lakebase_instance_name=None,
                                     lakebase_autoscaling_endpoint=name)  # fmt: skip
    started = time.monotonic()
    text = start_failure(settings)
    assert time.monotonic() - started < 5  # said at once, not after a pool timeout
    assert text.startswith(f"Failed to connect to Lakebase instance '{name}'. {LOCAL_TEXT}")
    assert text.endswith(
        f"Cause: {owner.host} answered the request for a database credential for '{name}' "
        "without a token, so there is no password to log in with. Retry; if it persists, check "
        "that DATABRICKS_HOST is the workspace's URL itself (not a proxy or gateway in front of "
        "it)."
    )


@pytest.mark.parametrize("by", ["endpoint", "branch"])
def test_an_endpoint_without_a_host_yet(
    owner: LocalLakebase, endpoint_initializing: None, by: str
) -> None:
    endpoint = owner.endpoint_name
    if by == "endpoint":
        named = {"lakebase_autoscaling_endpoint": endpoint}
    else:
        named = {"lakebase_autoscaling_project": owner.project,
                 "lakebase_autoscaling_branch": owner.branch}  # fmt: skip
    settings = lakebase_settings(owner, lakebase_instance_name=None, **named)
    text = start_failure(settings)
    assert text.startswith("Failed to connect to Lakebase instance '")
    assert text.endswith(
        f"Cause: endpoint {endpoint} has no host yet (state INIT): it is still being created "
        "or started. Wait until its state is ACTIVE "
        f"(`databricks postgres get-endpoint {endpoint}`) and retry."
    )


def test_a_bad_token_says_which_configuration_was_used(monkeypatch, local_lakebase) -> None:
    use_identity(monkeypatch, local_lakebase, "dapi-not-a-real-token")
    with pytest.raises(LakebaseError) as error:
        open_target(lakebase_settings(local_lakebase))
    text = str(error.value)
    assert LOCAL_TEXT in text
    assert f"configuration used: host={local_lakebase.host}, auth_type=pat" in text


def test_contradicting_lakebase_settings(owner: LocalLakebase) -> None:
    with pytest.raises(ConfigurationError, match="More than one Lakebase target"):
        open_target(lakebase_settings(owner, lakebase_autoscaling_endpoint=owner.endpoint_name))
    with pytest.raises(ConfigurationError, match="Both LAKEBASE_AUTOSCALING_PROJECT"):
        open_target(lakebase_settings(owner, lakebase_instance_name=None,
                                      lakebase_autoscaling_project="p"))  # fmt: skip


def test_an_identity_without_a_role_is_told_at_once(monkeypatch, local_lakebase) -> None:
    user = local_lakebase.add_user(f"norole-{uuid.uuid4().hex[:8]}@example.com")
    local_lakebase.grant_can_use(user.name)
    use_identity(monkeypatch, local_lakebase, user.token)
    target = open_target(lakebase_settings(local_lakebase))
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as error:
        asyncio.run(check_login(target))
    assert time.monotonic() - started < 5  # no pool timeout in between
    text = str(error.value)
    assert LOCAL_TEXT in text
    assert f'PostgreSQL role "{user.name}" does not exist' in text
    assert f"SELECT databricks_create_role('{user.name}', 'USER');" in text


def test_a_role_without_grants_then_granted(monkeypatch, local_lakebase, serve) -> None:
    ll = local_lakebase
    user = ll.add_user(f"nogrants-{uuid.uuid4().hex[:8]}@example.com")
    ll.grant_can_use(user.name)
    owner_target_conninfo = ll.conninfo(ll.owner, ll.issue_database_credential(ll.owner))
    asyncio.run(ensure_schema(owner_target_conninfo))  # the owner created the tables
    owner_sql(ll, "CREATE EXTENSION IF NOT EXISTS databricks_auth")
    owner_sql(ll, "SELECT databricks_create_role(%s, 'USER')", (user.name,))
    use_identity(monkeypatch, ll, user.token)
    with pytest.raises(SchemaSetupError) as error:
        asyncio.run(AppRuntime.start(lakebase_settings(ll)))
    assert f"Role '{user.name}' lacks privileges the app needs: USAGE on schema ai_chatbot" in str(
        error.value
    )
    for statement in readme_grants(user.name, ll.owner):
        owner_sql(ll, statement)
    server = serve(lakebase_settings(ll))
    thread = f"g-{uuid.uuid4()}"
    with server.client() as client:
        say(client, "granted now", thread)
        assert client.delete(f"/api/threads/{thread}").status_code == 204


def readme_grants(grantee: str, owner_role: str) -> list[str]:
    """The SQL of the README's deployment section, for this grantee."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deploy to Databricks Apps") :]
    block = re.search(r"```sql\n(.*?)```", section, re.S)
    assert block, "the README's grant SQL is missing"
    text = block.group(1).replace("<sp>", grantee).replace("<owner>", owner_role)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def test_a_deployed_app_without_the_database_resource(monkeypatch, local_lakebase) -> None:
    ll = local_lakebase
    app_name = f"app-{uuid.uuid4().hex[:6]}"
    principal = ll.add_app(app_name)
    env = ll.app_env(app_name)
    assert "PGHOST" not in env  # no resource: nothing injected
    use_identity(monkeypatch, ll, None, DATABRICKS_AUTH_TYPE="oauth-m2m",
                 **{k: v for k, v in env.items() if k != "DATABRICKS_HOST"})  # fmt: skip
    settings = lakebase_settings(ll, databricks_app_name=app_name)
    target = open_target(settings)
    assert target.lakebase.user == principal.name  # the SP's application id, via OAuth
    with pytest.raises(DatabaseUnavailableError) as error:
        asyncio.run(check_login(target))
    text = str(error.value)
    assert text.startswith(
        f"Failed to connect to Lakebase instance '{ll.instance_name}'. The App Service "
        f"Principal for '{app_name}' may not have access."
    )
    assert "App resources > Add resource" in text
    assert f'PostgreSQL role "{principal.name}" does not exist' in text
    with pytest.raises(LakebaseError, match=f"The App Service Principal for '{app_name}'"):
        open_target(lakebase_settings(ll, databricks_app_name=app_name,
                                      lakebase_instance_name="wrong"))  # fmt: skip


def test_a_deployed_app_with_the_resource_and_the_readme_grants(
    monkeypatch, local_lakebase, serve
) -> None:
    ll = local_lakebase
    app_name = f"app-{uuid.uuid4().hex[:6]}"
    principal = ll.add_app(app_name)
    ll.attach_app_resource(app_name)
    asyncio.run(ensure_schema(ll.conninfo(ll.owner, ll.issue_database_credential(ll.owner))))
    for statement in readme_grants(principal.name, ll.owner):
        owner_sql(ll, statement)
    env = ll.app_env(app_name)
    use_identity(monkeypatch, ll, None, DATABRICKS_AUTH_TYPE="oauth-m2m",
                 **{k: v for k, v in env.items() if k != "DATABRICKS_HOST"})  # fmt: skip
    # Only what the platform injects: PG* and the app's identity, no LAKEBASE_INSTANCE_NAME.
    settings = Settings(_env_file=None, model_backend="echo", db_pool_timeout=5.0)  # type: ignore[call-arg]
    assert settings.pghost == ll.pg_host and settings.lakebase_instance_name is None
    server = serve(settings)
    thread = f"app-{uuid.uuid4()}"
    with server.client(headers={"X-Forwarded-Email": "someone@example.com"}) as client:
        say(client, "from the deployed app", thread)
        assert "You have sent 2" in answer_text(say(client, "again", thread))
        assert client.delete(f"/api/threads/{thread}").status_code == 204
    assert server.app.state.runtime.target.lakebase.instance_name == ll.instance_name
    # Least privilege: the app's role may use the tables but not drop them.
    token = ll.issue_database_credential(principal.name)
    with (
        psycopg.connect(ll.conninfo(principal.name, token), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("DROP TABLE public.checkpoints")


def test_start_app_from_the_printed_env_lines(local_lakebase, scratch_dir: Path) -> None:
    """`uv run start-app` with the printed lines in .env.local, across token expiries."""
    (scratch_dir / ".env.local").write_text("\n".join(local_lakebase.env_lines()) + "\n")
    local_lakebase.token_ttl = 2.0
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    env["MODEL_BACKEND"] = "echo"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "start-app"), "--port", str(port)], cwd=scratch_dir,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = []
        while not any("is ready at" in line for line in lines):
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert any("memory database: lakebase PostgreSQL 18" in line for line in lines), lines
        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            thread = f"cli-{uuid.uuid4()}"
            for turn in range(5):  # about 6 s with a 2 s token lifetime
                reply = say(client, f"via .env.local {turn}", thread)
                assert f"You have sent {turn + 1}" in answer_text(reply)
                time.sleep(1.2)
    finally:
        local_lakebase.token_ttl = 3600.0
        process.send_signal(2)
        assert process.wait(timeout=30) == 0


def test_suggested_sql_quotes_names(database: str) -> None:
    from lakebase_memory.database.lakebase import sql_identifier, sql_literal

    name = 'o\'neil "x"@corp.com'
    with psycopg.connect(database) as conn:  # what a DBA pastes reads back as the name
        literal = conn.execute(f"SELECT {sql_literal(name)}".encode()).fetchone()
        column = conn.execute(f"SELECT 1 AS {sql_identifier(name)}".encode()).description
    assert literal == (name,)
    assert column is not None and column[0].name == name
