"""The long-term memory store's tables under access control, on plain PostgreSQL and on the
local Lakebase: `setup` creates them as the owner (the vector tables for the configured or
given dimensions), a fresh principal cannot use them until `grant`, start-up and `doctor` name
exactly what is missing, and after `grant` the app runs with the store in use (memories saved,
searched, deleted and erased over HTTP) while the principal still cannot do what it was not
granted; `grant --sql` gives the same; doctor diagnoses a missing or mismatched vector table.
And the store's rows in the lifecycle: erasing a user deletes their memories (and vectors) and
no one else's; retention deletes expired items only, in batches."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from langgraph.store.postgres import PostgresStore
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from typer.testing import CliRunner

from conftest import make_settings, say
from lakebase_memory.agent.models.embeddings import HashEmbeddings
from lakebase_memory.cli.main import app
from lakebase_memory.errors import SchemaSetupError
from lakebase_memory.local_lakebase import LocalLakebase
from lakebase_memory.memory.lifecycle import ThreadStore
from lakebase_memory.memory.retention import RetentionPolicy
from lakebase_memory.memory.store import AsyncMemoryStore, namespace_prefix, user_namespace
from lakebase_memory.schema import ensure_schema, missing_privileges
from lakebase_memory.server.retention import RetentionTask
from lakebase_memory.server.runtime import AppRuntime
from test_doctor import World, doctor
from test_grant_cli import converse, grant, psql, report
from test_lakebase_app import FOREIGN, lakebase_settings
from test_thread_lifecycle import add_chat

runner = CliRunner()
DIMS = 8
VECTORS = {"EMBEDDING_BACKEND": "hash", "EMBEDDING_DIMS": str(DIMS)}
STORE = ("store_migrations", "store")
VECTOR = ("vector_migrations", "store_vectors")
DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
# What the app's role must not do to the store with only what `grant` gives.
FORBIDDEN = (
    "DROP TABLE public.store",
    "TRUNCATE public.store_vectors",
    "ALTER TABLE public.store ADD COLUMN extra int",
    "CREATE INDEX mine ON public.store (key)",
)


def store_privileges(tables: tuple[str, ...], schema: str = "public") -> list[str]:
    return [f'{p} on {schema}."{t}"' for t in tables for p in DML]


def assert_store_out_of_reach(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement in FORBIDDEN:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement.encode())


def use_memories(server_client: httpx.Client, user: str) -> None:
    """The store in use through the app: save, read, search (words and meaning), delete."""
    headers = {"X-Forwarded-Email": user}
    for key, fact in (("colour", "teal is my favourite colour"), ("pet", "a cat named Ada")):
        put = server_client.put(
            f"/api/memories/{key}", json={"value": {"fact": fact}}, headers=headers
        )
        assert put.status_code == 200, put.text
    put = server_client.put("/api/memories/gone", json={"value": {"x": "y"}}, headers=headers)
    assert put.status_code == 200, put.text
    assert server_client.delete("/api/memories/gone", headers=headers).status_code == 204
    found = server_client.get("/api/memories", params={"query": "teal"}, headers=headers)
    assert found.status_code == 200, found.text
    assert found.json()["memories"][0]["key"] == "colour"
    listed = server_client.get("/api/memories", headers=headers).json()["memories"]
    assert sorted(m["key"] for m in listed) == ["colour", "pet"]
    turn = server_client.post(
        "/invocations",
        json={"input": f"hello from {user}", "custom_inputs": {"thread_id": f"of-{user}"}},
        headers=headers,
    )
    assert turn.status_code == 200, turn.text


def store_rows(conninfo: str, user: str) -> tuple[int, int]:
    """(store rows, store_vectors rows) of the user's namespace and below it."""
    prefix = namespace_prefix(user)
    with psycopg.connect(conninfo) as conn:
        counts = []
        for table in ("store", "store_vectors"):
            query = sql.SQL(
                "SELECT count(*) FROM {} WHERE prefix = %s OR starts_with(prefix, %s)"
            ).format(sql.Identifier("public", table))
            counts.append(conn.execute(query, (prefix, prefix + ".")).fetchone()[0])
    return counts[0], counts[1]


def erase(client: httpx.Client, user: str) -> dict:
    response = client.delete(
        "/api/threads", params={"confirm": "all"}, headers={"X-Forwarded-Email": user}
    )
    assert response.status_code == 200, response.text
    return response.json()["deleted"]


def start_up_error(settings) -> str:
    with pytest.raises(SchemaSetupError) as raised:
        asyncio.run(AppRuntime.start(settings))
    return str(raised.value)


# --- plain PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture
def owner_env(monkeypatch, tmp_path: Path, database: str) -> Iterator[str]:
    """The owner's configuration (the superuser of a fresh database), with an embedding model."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith((*FOREIGN, "EMBEDDING_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", database)
    for name, value in VECTORS.items():
        monkeypatch.setenv(name, value)
    yield database


def new_role(database: str) -> str:
    role = f"store app {uuid.uuid4().hex[:6]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    return role


def test_a_fresh_role_uses_the_store_after_grant(owner_env: str, monkeypatch, serve) -> None:
    database = owner_env
    setup = runner.invoke(app, ["setup"])  # the owner's configuration has the embedding model
    assert setup.exit_code == 0, setup.output
    assert f"✓ created store_vectors in public ({DIMS} dimensions, pgvector)" in setup.output
    assert '+ table public."store_vectors"' in setup.output
    assert "note: no vector tables" not in setup.output
    role = new_role(database)
    as_app = make_conninfo(database, user=role)
    settings = make_settings(as_app, trust_forwarded_identity=True, **{
        k.lower(): v for k, v in VECTORS.items()
    })  # fmt: skip

    message = start_up_error(settings)  # before the grant: start-up names what is missing
    for privilege in store_privileges(STORE + VECTOR):
        assert privilege in message, privilege
    assert f"`lakebase-memory grant '{role}'`" in message
    monkeypatch.setenv("DATABASE_URL", as_app)
    before = doctor()
    assert before.statuses == "PNNNPPFN", before.checks
    items = before.failed("privileges")["items"]
    assert set(store_privileges(STORE + VECTOR)) <= set(items)

    monkeypatch.setenv("DATABASE_URL", database)
    granted = grant(role)
    assert granted.exit_code == 0, granted.output
    tables = next(line for line in granted.stdout.splitlines() if " on 16 tables: " in line)
    for table in STORE + VECTOR:
        assert f"public.{table}," in tables
    assert "note: some of the app's tables" not in granted.stdout
    monkeypatch.setenv("DATABASE_URL", as_app)
    after = doctor()
    assert after.exit_code == 0 and after.statuses == "PNNNPPPN", after.checks
    assert "all 16 tables exist" in after.checks["schema"]["detail"]

    server = serve(settings)
    with server.client() as client:
        for user in ("ada@example.com", "bob@example.com"):
            use_memories(client, user)
        assert store_rows(database, "ada@example.com") == (2, 2)  # one vector per item
        deleted = erase(client, "ada@example.com")
        assert deleted["memories"] == 2 and deleted["threads"] == 1
        left = client.get("/api/memories", headers={"X-Forwarded-Email": "ada@example.com"})
        assert left.json()["memories"] == []
    assert store_rows(database, "ada@example.com") == (0, 0)
    assert store_rows(database, "bob@example.com") == (2, 2)
    assert_store_out_of_reach(as_app)


def test_start_up_names_exactly_the_missing_store_privileges(owner_env: str) -> None:
    """A role granted before the store existed, whose owner then lost the default privileges
    (or another role created the store): start-up lists the store's privileges, and only."""
    database = owner_env
    asyncio.run(ensure_schema(database, vector_dims=DIMS))
    role = new_role(database)
    assert grant(role).exit_code == 0
    with psycopg.connect(database, autocommit=True) as conn:
        for table in STORE + VECTOR:
            conn.execute(
                sql.SQL("REVOKE ALL ON {} FROM {}").format(
                    sql.Identifier("public", table), sql.Identifier(role)
                )
            )
    settings = make_settings(make_conninfo(database, user=role), embedding_backend="hash",
                             embedding_dims=DIMS)  # fmt: skip
    message = start_up_error(settings)
    missing = ", ".join(store_privileges(STORE + VECTOR))
    assert message.startswith(f"Role '{role}' lacks privileges the app needs: {missing}. ")

    async def ask() -> list[str]:
        conninfo = make_conninfo(database, user=role)
        async with await psycopg.AsyncConnection.connect(conninfo, row_factory=dict_row) as conn:
            return await missing_privileges(conn, "public")

    assert asyncio.run(ask()) == store_privileges(STORE + VECTOR)
    assert grant(role).exit_code == 0  # grant again: fixed
    assert asyncio.run(ask()) == []


def test_the_sql_script_covers_the_store(owner_env: str, tmp_path: Path) -> None:
    database = owner_env
    asyncio.run(ensure_schema(database, vector_dims=DIMS))
    by_grant, by_sql = (f"store parity {uuid.uuid4().hex[:6]} {n}" for n in ("cli", "sql"))
    assert grant(by_grant).exit_code == 0
    script = grant(by_sql, "--sql")
    assert script.exit_code == 0, script.output
    assert "('public', 'store_vectors')" in script.stdout
    psql(database, script.stdout, tmp_path)
    expected = report(database, by_grant)
    for table in STORE + VECTOR:
        assert expected.on("table", f"public.{table}") == set(DML), table
    assert report(database, by_sql).summary() == expected.summary()


def test_a_dedicated_schema_needs_pgvectors_schema_too(
    owner_env: str, monkeypatch, serve, tmp_path: Path
) -> None:
    """With CHECKPOINT_SCHEMA of its own, the store's vectors still use pgvector's type in
    `public`: on a server where a DBA revoked USAGE on public from PUBLIC, grant gives it."""
    database = owner_env
    monkeypatch.setenv("CHECKPOINT_SCHEMA", "memory")
    asyncio.run(ensure_schema(database, "memory"))
    # The vector tables as LangGraph makes them, the type from `public` (where the set-up puts
    # the extension); then the app's set-up finds them current.
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")
        conn.execute("SET search_path TO memory, public")
        PostgresStore(conn, index={"dims": DIMS, "embed": HashEmbeddings(DIMS)}).setup()
    assert asyncio.run(ensure_schema(database, "memory", vector_dims=DIMS)) == []
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("REVOKE USAGE ON SCHEMA public FROM PUBLIC")
    role, by_sql = new_role(database), f"store sql {uuid.uuid4().hex[:6]}"

    async def ask(who: str) -> list[str]:
        async with await psycopg.AsyncConnection.connect(database, row_factory=dict_row) as conn:
            return await missing_privileges(conn, "memory", role=who)

    assert "USAGE on schema public" in asyncio.run(ask(role))
    granted = grant(role)
    assert granted.exit_code == 0, granted.output
    assert (
        "✓ USAGE on schema public (pgvector's type, for the memory store's vectors)"
        in granted.stdout
    )
    assert "memory.store_vectors" in granted.stdout
    assert asyncio.run(ask(role)) == []
    psql(database, grant(by_sql, "--sql").stdout, tmp_path)
    assert report(database, by_sql).summary() == report(database, role).summary()

    as_app = make_conninfo(database, user=role)
    monkeypatch.setenv("DATABASE_URL", as_app)
    assert doctor().statuses == "PNNNPPPN"
    settings = make_settings(as_app, checkpoint_schema="memory", **{
        k.lower(): v for k, v in VECTORS.items()
    })  # fmt: skip
    with serve(settings).client() as client:
        put = client.put("/api/memories/tea", json={"value": {"fact": "likes green tea"}})
        assert put.status_code == 200, put.text
        found = client.get("/api/memories", params={"query": "green tea"}).json()["memories"]
        assert [m["key"] for m in found] == ["tea"]
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM memory.store_vectors").fetchone() == (1,)


def test_grant_before_the_store_exists_covers_it_later(owner_env: str, serve) -> None:
    """Granted on a database set up before the store: the owner's later `setup` creates the
    store's tables, which the default privileges cover; no new grant is needed."""
    database = owner_env
    asyncio.run(ensure_schema(database))
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DROP TABLE public.store, public.store_migrations")  # as before the store
    role = new_role(database)
    granted = grant(role)
    assert granted.exit_code == 0, granted.output
    assert (
        "note: some of the app's tables do not exist yet (public.store_migrations, "
        "public.store, public.vector_migrations, public.store_vectors); create them as "
        "postgres with `lakebase-memory setup`"
    ) in granted.stdout
    as_app = make_conninfo(database, user=role)
    settings = make_settings(as_app, embedding_backend="hash", embedding_dims=DIMS)
    message = start_up_error(settings)  # pgvector first: the role may not enable it
    assert f"role '{role}' may not enable it" in message and "lakebase-memory setup" in message
    assert runner.invoke(app, ["setup"]).exit_code == 0
    server = serve(settings)
    with server.client() as client:
        converse(server)
        put = client.put("/api/memories/k", json={"value": {"fact": "granted once"}})
        assert put.status_code == 200, put.text


def test_doctor_names_the_missing_vector_tables(owner_env: str, monkeypatch) -> None:
    database = owner_env
    asyncio.run(ensure_schema(database))  # set up without an embedding model
    outcome = doctor()  # now the configuration has one
    assert outcome.statuses == "PNNNPFSN", outcome.checks  # privileges: once the tables exist
    schema = outcome.failed("schema")
    assert schema["items"] == [
        'table public."vector_migrations"',
        'table public."store_vectors"',
        "pending migration store vector migrations",
    ]
    fix = f"`lakebase-memory setup --embedding-dims {DIMS}` as the database owner"
    assert fix in schema["fix"]
    for name in VECTORS:
        monkeypatch.delenv(name)  # the owner's own configuration has no embedding model
    plain = runner.invoke(app, ["setup"])
    assert plain.exit_code == 0 and "✓ everything is up to date" in plain.output
    made = runner.invoke(app, ["setup", "--embedding-dims", str(DIMS)])  # doctor's fix
    assert made.exit_code == 0, made.output
    assert '+ table public."store_vectors"' in made.output
    for name, value in VECTORS.items():
        monkeypatch.setenv(name, value)
    assert doctor().statuses == "PNNNPPPN"

    monkeypatch.setenv("EMBEDDING_DIMS", "16")  # another model than the vectors came from
    mismatch = doctor()
    assert mismatch.statuses == "PNNNPFPN", mismatch.checks
    schema = mismatch.failed("schema")
    assert schema["items"] == [
        f"public.store_vectors holds embeddings of {DIMS} dimensions, the configured model makes 16"
    ]
    assert schema["fix"].startswith(f"Set EMBEDDING_DIMS={DIMS} (with the embedding model")


def test_setup_without_an_embedding_model_says_how_to_add_vectors(owner_env: str, monkeypatch):
    for name in VECTORS:
        monkeypatch.delenv(name)
    result = runner.invoke(app, ["setup"])
    assert result.exit_code == 0, result.output
    assert '+ table public."store"' in result.output
    assert "store_vectors" not in result.output
    assert "note: no vector tables for the memory store" in result.output
    assert "`lakebase-memory setup --embedding-dims N`" in result.output
    refused = runner.invoke(app, ["setup", "--embedding-dims", "0"])
    assert refused.exit_code == 2 and "--embedding-dims" in refused.output


def test_the_cli_erasure_counts_memories(owner_env: str, serve) -> None:
    database = owner_env
    server = serve(make_settings(database, embedding_backend="hash", embedding_dims=DIMS))
    with server.client() as client:
        say(client, "hello", "cli-erase")
        for key in ("a", "b", "c"):
            client.put(f"/api/memories/{key}", json={"value": {"fact": key}}).raise_for_status()
    result = runner.invoke(app, ["threads", "erase-user", "local-user", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    erased = json.loads(result.stdout)
    assert erased["deleted"]["memories"] == 3 and erased["deleted"]["threads"] == 1
    assert store_rows(database, "local-user") == (0, 0)


# --- the local Lakebase --------------------------------------------------------------------------


@pytest.fixture
def lakebase_world(local_lakebase: LocalLakebase, monkeypatch, tmp_path, short_token_ttl):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMBEDDING_BACKEND", raising=False)
    monkeypatch.delenv("EMBEDDING_DIMS", raising=False)
    made = World(local_lakebase, monkeypatch, short_token_ttl)
    yield made
    made.drop_databases()


def test_a_lakebase_app_uses_the_store_after_grant(lakebase_world: World, serve) -> None:
    w, ll = lakebase_world, lakebase_world.ll
    db = w.database()
    # On Lakebase pgvector is an allowed extension the instance owner may create; the stand-in's
    # owner is not a superuser, so the platform (its superuser) enables it here.
    with psycopg.connect(ll.admin_conninfo(db), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION IF NOT EXISTS vector")
    w.run_as(ll.owner_token, db, **VECTORS)
    setup = runner.invoke(app, ["setup"])
    assert setup.exit_code == 0, setup.output
    assert '+ table public."store_vectors"' in setup.output
    app_name = f"store-{uuid.uuid4().hex[:6]}"
    principal = ll.add_app(app_name).name
    ll.attach_app_resource(app_name)  # the platform's role, with nothing on the tables

    w.run_as_app(app_name, db, **VECTORS)
    settings = lakebase_settings(ll, databricks_app_name=app_name, pgdatabase=db)
    message = start_up_error(settings)
    for privilege in store_privileges(STORE + VECTOR):
        assert privilege in message, privilege
    before = doctor()
    assert before.statuses == "PPPPPPFP", before.checks
    assert set(store_privileges(STORE + VECTOR)) <= set(before.failed("privileges")["items"])

    w.run_as(ll.owner_token, db, **VECTORS)
    granted = grant(app_name)
    assert granted.exit_code == 0, granted.output
    assert f'✓ role "{principal}" exists' in granted.stdout
    assert "public.store_vectors," in granted.stdout
    w.run_as_app(app_name, db, **VECTORS)
    after = doctor()
    assert after.exit_code == 0 and after.statuses == "PPPPPPPP", after.checks

    admin = ll.admin_conninfo(db)
    server = serve(settings)
    with server.client() as client:
        for user in ("ada@example.com", "bob@example.com"):
            use_memories(client, user)
        assert store_rows(admin, "ada@example.com") == (2, 2)
        assert erase(client, "ada@example.com")["memories"] == 2
    assert store_rows(admin, "ada@example.com") == (0, 0)
    assert store_rows(admin, "bob@example.com") == (2, 2)
    assert_store_out_of_reach(ll.conninfo(principal, ll.issue_database_credential(principal), db))


# --- erasure and retention of the store's rows ----------------------------------------------------


@pytest.fixture
async def memories(database: str) -> AsyncIterator[AsyncMemoryStore]:
    """The store with vectors (what the app opens with an embedding model), on its own tables."""
    await ensure_schema(database, vector_dims=DIMS)
    async with await psycopg.AsyncConnection.connect(
        database, autocommit=True, row_factory=dict_row
    ) as conn:
        yield AsyncMemoryStore(conn, index={"dims": DIMS, "embed": HashEmbeddings(DIMS)})


async def test_erasing_a_user_deletes_their_memories_only(
    database: str, memories: AsyncMemoryStore
) -> None:
    namespaces = {
        "ada": [user_namespace("ada"), (*user_namespace("ada"), "projects")],
        "ada2": [user_namespace("ada2")],  # a name that starts like hers
        "ada.x": [user_namespace("ada.x")],  # stored as ada-x
        "ada-x": [user_namespace("ada-x")],  # stored as ada%2Dx: not ada.x's
        "a_b": [user_namespace("a_b")],  # LIKE's wildcards are escaped
        "axb": [(*user_namespace("axb"), "sub")],
        "bob": [user_namespace("bob"), ("other_app", "ada")],
    }
    for user, spaces in namespaces.items():
        for number, namespace in enumerate(spaces):
            for key in ("k1", "k2"):
                await memories.aput(namespace, key, {"fact": f"{user} {number} {key}"})
    with psycopg.connect(database, autocommit=True) as conn:
        add_chat(conn, "ada-thread", "ada")
    before = {user: store_rows(database, user) for user in namespaces}
    assert before["ada"] == (4, 4) and before["bob"] == (2, 2)

    async with ThreadStore.from_conn_string(database) as threads:
        erased = await threads.erase_user("ada", batch_size=3)  # two batches of memories
        assert (erased.memories, erased.threads, erased.chats) == (4, 1, 1)
        assert erased.to_json()["memories"] == 4
        assert store_rows(database, "ada") == (0, 0)
        for user in ("ada2", "ada.x", "ada-x", "bob"):
            assert store_rows(database, user) == before[user], user
        assert (await threads.erase_user("ada.x")).memories == 2
        assert store_rows(database, "ada-x") == before["ada-x"]
        assert (await threads.erase_user("a_b")).memories == 2
        assert store_rows(database, "axb") == before["axb"]
        assert (await threads.erase_user("ada")).memories == 0
    with psycopg.connect(database) as conn:
        others = conn.execute("SELECT count(*) FROM store WHERE prefix = 'other_app.ada'")
        assert others.fetchone()[0] == 2  # another namespace, not her memories


async def test_erasure_without_the_store_table(database: str) -> None:
    await ensure_schema(database)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DROP TABLE store, store_migrations")  # a database from before the store
    async with ThreadStore.from_conn_string(database) as threads:
        assert (await threads.erase_user("ada")).memories == 0


def expire(database: str, keys: list[str]) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "UPDATE store SET expires_at = now() - interval '1 minute' WHERE key = ANY(%s)",
            (keys,),
        )


def keys_left(database: str) -> set[str]:
    with psycopg.connect(database) as conn:
        return {r[0] for r in conn.execute("SELECT key FROM store").fetchall()}


async def test_retention_deletes_expired_memories_only(
    database: str, memories: AsyncMemoryStore
) -> None:
    ada = user_namespace("ada")
    old = [f"old-{i}" for i in range(5)]
    for key in old:
        await memories.aput(ada, key, {"fact": key}, ttl=60)
    await memories.aput(ada, "later", {"fact": "expires in an hour"}, ttl=60)
    await memories.aput(ada, "forever", {"fact": "no TTL"})
    expire(database, old)
    async with ThreadStore.from_conn_string(database) as threads:
        untouched = await threads.apply_retention(RetentionPolicy(max_age_days=1))
        assert untouched.memories == 0 and keys_left(database) == {*old, "later", "forever"}
        policy = RetentionPolicy(expire_memories=True)
        assert policy.active and policy.describe() == "delete expired memories"
        dry = await threads.apply_retention(policy, dry_run=True)
        assert dry.memories == 5 and len(keys_left(database)) == 7
        with psycopg.connect(database) as writer:  # a writer holds one expired item
            writer.execute("SELECT 1 FROM store WHERE key = 'old-0' FOR UPDATE")
            report = await threads.apply_retention(policy, batch_size=2)
            assert (report.memories, report.batches) == (4, 2)
            assert report.to_json()["memories"] == 4
        assert keys_left(database) == {"old-0", "later", "forever"}  # left for the next pass
        assert (await threads.apply_retention(policy, batch_size=2)).memories == 1
    assert keys_left(database) == {"later", "forever"}
    with psycopg.connect(database) as conn:
        vectors = conn.execute("SELECT DISTINCT key FROM store_vectors ORDER BY key").fetchall()
    assert vectors == [("forever",), ("later",)]  # the expired items' vectors went with them


async def test_the_server_task_sweeps_expired_memories(
    database: str, memories: AsyncMemoryStore
) -> None:
    assert RetentionTask.start(memories.conn, make_settings(database)) is None  # no rule, no TTL
    await memories.aput(user_namespace("ada"), "old", {"fact": "old"}, ttl=1)
    await memories.aput(user_namespace("ada"), "new", {"fact": "new"}, ttl=60)
    expire(database, ["old"])
    settings = make_settings(
        database, memory_item_ttl_minutes=60, memory_retention_interval_seconds=0.05
    )
    task = RetentionTask.start(memories.conn, settings)
    assert task is not None and task.policy.expire_memories
    assert task.policy.max_age_days is None  # memories only: no thread rule was set
    try:
        for _ in range(200):
            if task.passes >= 1 and keys_left(database) == {"new"}:
                break
            await asyncio.sleep(0.05)
    finally:
        await task.stop()
    assert keys_left(database) == {"new"}
