"""LakebaseClient against the local Lakebase, with the real databricks-sdk: the seed's
"Option A" snippet, every constructor form, and databricks_create_role's SQLSTATEs."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from conftest import ROOT
from lakebase_fixtures import workspace_client
from lakebase_memory import AsyncLakebaseClient, LakebaseClient, SchemaPrivilege, TablePrivilege
from lakebase_memory.errors import DatabaseUnavailableError
from lakebase_memory.local_lakebase import LocalLakebase
from lakebase_memory.schema import ensure_schema
from lakebase_memory.schema.app_migrations import CHECKPOINT_TABLES
from test_lakebase_app import owner_sql, use_identity

# The seed's "Option A", character for character (seed/lakebase-setup.md).
SEED_OPTION_A = """\
from databricks_ai_bridge.lakebase import LakebaseClient, SchemaPrivilege, TablePrivilege

# Initialize client
client = LakebaseClient(instance_name="<your-lakebase-instance>")

app_sp = "<app-service-principal-id>"  # From Step 2

# Create role for the service principal
client.create_role(app_sp, "SERVICE_PRINCIPAL")

# Grant schema privileges
client.grant_schema(
    grantee=app_sp,
    privileges=[SchemaPrivilege.USAGE, SchemaPrivilege.CREATE],
    schemas=["drizzle", "ai_chatbot", "public"],
)

# Grant table privileges on all tables in schemas
client.grant_all_tables_in_schema(
    grantee=app_sp,
    privileges=[TablePrivilege.SELECT, TablePrivilege.INSERT, TablePrivilege.UPDATE],
    schemas=["drizzle", "ai_chatbot"],
)

# Grant privileges on specific checkpoint tables
client.grant_table(
    grantee=app_sp,
    privileges=[TablePrivilege.SELECT, TablePrivilege.INSERT, TablePrivilege.UPDATE],
    tables=[
        "public.checkpoint_migrations",
        "public.checkpoint_writes",
        "public.checkpoints",
        "public.checkpoint_blobs",
    ],
)
"""
SEED = ROOT.parent / "shared" / "seed" / "lakebase-setup.md"


@pytest.fixture
def as_owner(monkeypatch, local_lakebase: LocalLakebase, tmp_path: Path) -> LocalLakebase:
    """The process environment of the instance owner, as `.env.local` would set it."""
    ll = local_lakebase
    monkeypatch.chdir(tmp_path)  # no dotenv files of the checkout
    use_identity(
        monkeypatch, ll, ll.owner_token, DATABRICKS_AUTH_TYPE="pat", PGPORT=str(ll.pg_port)
    )
    asyncio.run(ensure_schema(ll.conninfo(ll.owner, ll.issue_database_credential(ll.owner))))
    return ll


def test_the_snippet_is_the_seeds() -> None:
    if not SEED.exists():
        pytest.skip(f"{SEED} is not in this checkout")
    text = SEED.read_text()
    block = text[text.index("#### Option A") :].split("```python\n", 1)[1].split("```", 1)[0]
    assert block == SEED_OPTION_A


def test_seed_option_a_runs_with_only_its_import_changed(as_owner: LocalLakebase) -> None:
    ll = as_owner
    sp = ll.add_service_principal(f"seed-app-{uuid.uuid4().hex[:6]}")
    code = SEED_OPTION_A.replace(
        "from databricks_ai_bridge.lakebase import", "from lakebase_memory import"
    )
    changed = [
        a for a, b in zip(code.splitlines(), SEED_OPTION_A.splitlines(), strict=True) if a != b
    ]
    assert changed == [
        "from lakebase_memory import LakebaseClient, SchemaPrivilege, TablePrivilege"
    ]
    code = code.replace("<your-lakebase-instance>", ll.instance_name)
    code = code.replace("<app-service-principal-id>", sp.name)
    namespace: dict[str, object] = {}
    exec(compile(code, "seed-option-a", "exec"), namespace)  # the seed's own code
    client = namespace["client"]
    assert isinstance(client, LakebaseClient)
    try:
        report = client.privileges_of(sp.name)
        assert report.exists and report.can_login
        for schema in ("drizzle", "ai_chatbot", "public"):
            assert report.on("schema", schema) == {"USAGE", "CREATE"}
        for table in CHECKPOINT_TABLES:
            assert report.on("table", f"public.{table}") == {"SELECT", "INSERT", "UPDATE"}
        # The reference's grants, faithfully: no DELETE (so thread deletion would fail).
        assert report.on("table", "ai_chatbot.Chat") == {"SELECT", "INSERT", "UPDATE"}
    finally:
        client.close()
    # The role it created is a real login for the service principal.
    ll.grant_can_use(sp.name)
    token = ll.issue_database_credential(sp.name)
    with psycopg.connect(ll.conninfo(sp.name, token)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (sp.name,)


def test_databricks_create_role_sqlstates(as_owner: LocalLakebase, caplog) -> None:
    ll = as_owner
    sp = ll.add_service_principal(f"states-{uuid.uuid4().hex[:6]}")
    with LakebaseClient(instance_name=ll.instance_name) as client:
        missing = f"nobody-{uuid.uuid4().hex[:6]}@example.com"
        with pytest.raises(ValueError) as error:  # 22023
            client.create_role(missing, "USER")
        assert str(error.value).startswith(
            f"Identity '{missing}' not found in the Databricks workspace. Ensure the user exists"
        )
        assert isinstance(error.value.__cause__, psycopg.errors.InvalidParameterValue)
        assert str(error.value).endswith(f"Original error: {error.value.__cause__}")
        with pytest.raises(ValueError, match="not found in the Databricks workspace"):
            client.create_role(sp.name, "USER")  # 22023 again: it is a service principal
        with caplog.at_level(logging.INFO, logger="lakebase_memory.access"):
            client.create_role(sp.name, "SERVICE_PRINCIPAL")
            client.create_role(sp.name, "SERVICE_PRINCIPAL")  # 42710
        assert f"Role '{sp.name}' already exists, skipping creation." in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # real Lakebase
        assert client.role_exists(sp.name)

    # 42501: a role that is not a member of databricks_superuser may not create roles.
    user = ll.add_user(f"plain-{uuid.uuid4().hex[:6]}@example.com")
    owner_sql(ll, "SELECT databricks_create_role(%s, 'USER')", (user.name,))
    ll.grant_can_use(user.name)
    with LakebaseClient(
        instance_name=ll.instance_name, workspace_client=workspace_client(ll, user)
    ) as as_user:
        assert as_user.execute("SELECT current_user AS me") == [{"me": user.name}]
        with pytest.raises(PermissionError) as denied:
            as_user.create_role(ll.add_user(f"x-{uuid.uuid4().hex[:6]}@example.com").name, "USER")
        assert str(denied.value).startswith("Insufficient privileges to create role")
        assert isinstance(denied.value.__cause__, psycopg.errors.InsufficientPrivilege)
        with pytest.raises(
            PermissionError, match="Insufficient privileges to grant USAGE on schema 'ai_chatbot'"
        ):
            as_user.grant_schema(sp.name, [SchemaPrivilege.USAGE], ["ai_chatbot"])


def test_autoscaling_forms(as_owner: LocalLakebase) -> None:
    ll = as_owner
    forms = [
        {"autoscaling_endpoint": ll.endpoint_name},
        {"project": ll.project, "branch": ll.branch},
        {"branch": f"projects/{ll.project}/branches/{ll.branch}"},
    ]
    for form in forms:
        with LakebaseClient(**form, max_size=2) as client:
            assert client.execute("SELECT current_user AS me") == [{"me": ll.owner}], form
            assert client.role_exists(ll.owner)


async def test_the_async_client_on_lakebase(as_owner: LocalLakebase) -> None:
    ll = as_owner
    async with AsyncLakebaseClient(instance_name=ll.instance_name) as client:
        assert await client.execute("SELECT current_user AS me") == [{"me": ll.owner}]
        report = await client.privileges_of(ll.owner)
        assert report.on("schema", "ai_chatbot") >= {"USAGE", "CREATE"}  # it owns it
        assert "databricks_superuser" in report.member_of
        with pytest.raises(ValueError, match="table does not exist"):
            await client.grant_table(ll.owner, [TablePrivilege.SELECT], ["public.nope"])


def test_a_login_without_a_role_fails_at_once(as_owner: LocalLakebase) -> None:
    ll = as_owner
    user = ll.add_user(f"norole-{uuid.uuid4().hex[:6]}@example.com")
    ll.grant_can_use(user.name)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as error:
        LakebaseClient(instance_name=ll.instance_name, workspace_client=workspace_client(ll, user))
    assert time.monotonic() - started < 10  # not a pool timeout
    assert f'PostgreSQL role "{user.name}" does not exist' in str(error.value)
