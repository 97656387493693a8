"""Schema set-up: stock checkpoint tables, chat tables, bookkeeping; safe when run at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.store.postgres import PostgresStore
from psycopg import sql

from conftest import ROOT, create_database, make_settings, say
from lakebase_memory.agent.models.embeddings import HashEmbeddings
from lakebase_memory.schema import (
    CHECKPOINT_TABLES,
    MIGRATIONS,
    ensure_schema,
    pending_migrations,
)
from lakebase_memory.schema.app_migrations import STORE_TABLES, VECTOR_TABLES

COLUMNS = """
SELECT table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = %s AND table_name = ANY(%s)
ORDER BY table_name, ordinal_position
"""
INDEXES = (
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = ANY(%s) "
    "ORDER BY indexname"
)


def shape(
    conninfo: str,
    schema: str = "public",
    tables: tuple[str, ...] = CHECKPOINT_TABLES,
    bookkeeping: str = "checkpoint_migrations",
) -> tuple[list, list]:
    with psycopg.connect(conninfo) as conn:
        columns = conn.execute(COLUMNS, (schema, list(tables))).fetchall()
        indexes = conn.execute(INDEXES, (schema, list(tables))).fetchall()
        versions = conn.execute(
            sql.SQL("SELECT v FROM {} ORDER BY v").format(sql.Identifier(schema, bookkeeping))
        ).fetchall()
    return columns + versions, [(n, d.replace(f"{schema}.", "")) for n, d in indexes]


def test_checkpoint_tables_are_exactly_langgraphs(pg_admin: str) -> None:
    ours, stock = create_database(pg_admin), create_database(pg_admin)
    created = asyncio.run(ensure_schema(ours))
    with PostgresSaver.from_conn_string(stock) as saver:
        saver.setup()
    assert shape(ours) == shape(stock)
    assert any("checkpoint tables" in line for line in created)
    assert "migration 0001_chat_tables" in created


def test_store_tables_are_langgraphs_plus_the_search_column(pg_admin: str) -> None:
    ours, stock = create_database(pg_admin), create_database(pg_admin)
    asyncio.run(ensure_schema(ours, vector_dims=8))
    index = {"dims": 8, "embed": HashEmbeddings(8)}
    with PostgresStore.from_conn_string(stock, index=index) as store:  # type: ignore[arg-type]
        store.setup()
    for tables, bookkeeping in ((STORE_TABLES, "store_migrations"),
                                (VECTOR_TABLES, "vector_migrations")):  # fmt: skip
        (our_columns, our_indexes), (stock_columns, stock_indexes) = (
            shape(ours, tables=tables, bookkeeping=bookkeeping),
            shape(stock, tables=tables, bookkeeping=bookkeeping),
        )
        extra_columns = [c for c in our_columns if c not in stock_columns]
        extra_indexes = [i for i in our_indexes if i not in stock_indexes]
        assert [c for c in stock_columns if c not in our_columns] == []
        assert [i for i in stock_indexes if i not in our_indexes] == []
        if tables == STORE_TABLES:
            assert [c[1] for c in extra_columns] == ["search_text"]
            assert sorted(i[0] for i in extra_indexes) == [
                "store_prefix_updated_at_idx",
                "store_search_text_idx",
            ]
        else:
            assert extra_columns == extra_indexes == []


def test_setup_is_idempotent_and_reports_nothing_the_second_time(database: str) -> None:
    asyncio.run(ensure_schema(database))
    assert asyncio.run(ensure_schema(database)) == []

    async def pending() -> list[str]:
        async with await psycopg.AsyncConnection.connect(
            database, row_factory=psycopg.rows.dict_row
        ) as conn:
            return await pending_migrations(conn)

    assert asyncio.run(pending()) == []


def test_chat_tables_keep_the_reference_names(database: str) -> None:
    asyncio.run(ensure_schema(database))
    with psycopg.connect(database) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('ai_chatbot', 'drizzle') ORDER BY 1, 2"
        ).fetchall()
        chat_columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'ai_chatbot' AND table_name = 'Chat'"
        )}  # fmt: skip
    assert tables == [
        ("ai_chatbot", "Chat"), ("ai_chatbot", "Message"), ("ai_chatbot", "Vote"),
        ("ai_chatbot", "checkpoint_messages"), ("ai_chatbot", "checkpoint_threads"),
        ("ai_chatbot", "response_events"), ("ai_chatbot", "responses"),
        ("drizzle", "__drizzle_migrations"),
    ]  # fmt: skip
    assert {"id", "createdAt", "title", "userId", "visibility", "lastContext"} <= chat_columns


CONCURRENT_SETUP = """
import asyncio, sys
from lakebase_memory.schema import ensure_schema
print(len(asyncio.run(ensure_schema(sys.argv[1]))))
"""


def test_many_processes_on_an_empty_database_all_succeed(database: str) -> None:
    processes = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT_SETUP, database], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]  # fmt: skip
    results = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, results
    created_counts = sorted(int(out.strip()) for out, _ in results)
    assert created_counts[:-1] == [0] * 5 and created_counts[-1] > 0  # exactly one did the work
    with psycopg.connect(database) as conn:
        applied = conn.execute("SELECT count(*) FROM drizzle.__drizzle_migrations").fetchone()
        assert applied == (len(MIGRATIONS),)
        versions = conn.execute("SELECT count(*), count(DISTINCT v) FROM checkpoint_migrations")
        total, distinct = versions.fetchone()
        assert total == distinct == len(PostgresSaver.MIGRATIONS)


def test_several_servers_starting_at_once(database: str, serve) -> None:
    import threading

    servers: list = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            servers.append(serve(make_settings(database)))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(servers) == 4
    with servers[0].client() as a, servers[3].client() as b:
        say(a, "from server 0", "shared")
        assert (
            'the first was: "from server 0"'
            in b.post(
                "/invocations", json={"input": "from 3", "custom_inputs": {"thread_id": "shared"}}
            ).json()["output"][0]["content"][0]["text"]
        )


def test_custom_checkpoint_schema(database: str, serve) -> None:
    server = serve(make_settings(database, checkpoint_schema="agent memory"))
    with server.client() as client:
        say(client, "in my schema", "cs")
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            'SELECT count(*) FROM "agent memory".checkpoints WHERE thread_id = %s', ("cs",)
        )
        assert rows.fetchone()[0] > 0
        assert conn.execute("SELECT to_regclass('public.checkpoints')").fetchone() == (None,)


def test_least_privileged_role_starts_after_an_owner_ran_setup(database: str, serve) -> None:
    asyncio.run(ensure_schema(database))
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS app_min; CREATE ROLE app_min LOGIN")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(
            "GRANT USAGE ON SCHEMA public, ai_chatbot, drizzle TO app_min;"
            "GRANT SELECT, INSERT, UPDATE, DELETE "
            "ON ALL TABLES IN SCHEMA public, ai_chatbot, drizzle TO app_min;"
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA drizzle TO app_min;"
        )
    app_conninfo = psycopg.conninfo.make_conninfo(database, user="app_min")
    server = serve(make_settings(app_conninfo))
    with server.client() as client:
        say(client, "no create rights needed", "lp")
        assert "You have sent 2" in say(client, "again", "lp")["output"][0]["content"][0]["text"]


def test_a_role_that_may_not_create_the_tables_is_told_what_to_do(database: str) -> None:
    import pytest

    from lakebase_memory.errors import SchemaSetupError

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS app_nocreate; CREATE ROLE app_nocreate LOGIN")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    role = psycopg.conninfo.make_conninfo(database, user="app_nocreate")
    with pytest.raises(SchemaSetupError, match="Run `lakebase-memory setup` as the database owner"):
        asyncio.run(ensure_schema(role))


def test_a_role_without_grants_is_told_which_privileges_are_missing(database: str) -> None:
    import pytest

    from lakebase_memory.errors import SchemaSetupError

    asyncio.run(ensure_schema(database))
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS app_partial; CREATE ROLE app_partial LOGIN")
        conn.execute("GRANT USAGE ON SCHEMA public, ai_chatbot, drizzle TO app_partial")
        conn.execute("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO app_partial")
    role = psycopg.conninfo.make_conninfo(database, user="app_partial")
    with pytest.raises(SchemaSetupError) as error:
        asyncio.run(ensure_schema(role))
    message = str(error.value)
    assert "Role 'app_partial' lacks privileges the app needs" in message
    assert 'DELETE on public."checkpoints"' in message
    assert 'SELECT on ai_chatbot."Chat"' in message
    assert "INSERT on public" not in message


REFERENCE_CHAT_TABLES = """
CREATE SCHEMA ai_chatbot;
CREATE TABLE ai_chatbot."Chat" (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "createdAt" timestamp NOT NULL,
    title text NOT NULL, "userId" text NOT NULL, visibility varchar NOT NULL DEFAULT 'private',
    "lastContext" jsonb);
CREATE TABLE ai_chatbot."Message" (
    id uuid PRIMARY KEY, "chatId" uuid NOT NULL REFERENCES ai_chatbot."Chat"(id),
    role varchar NOT NULL, parts json NOT NULL, attachments json NOT NULL,
    "createdAt" timestamp NOT NULL);
INSERT INTO ai_chatbot."Chat" (id, "createdAt", title, "userId")
    VALUES ('0196f1d2-8c1e-7a5b-9f00-000000000001', now(), 'from the reference UI', 'local-user');
INSERT INTO ai_chatbot."Message" VALUES ('0196f1d2-8c1e-7a5b-9f00-0000000000aa',
    '0196f1d2-8c1e-7a5b-9f00-000000000001', 'user', '[]', '[]', now());
"""


def test_a_database_the_reference_ui_set_up(database: str, serve) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(REFERENCE_CHAT_TABLES.encode())
    server = serve(make_settings(database))
    with server.client() as client:
        listed = client.get("/api/threads").json()["threads"]
        assert [(t["id"], t["title"]) for t in listed] == [
            ("0196f1d2-8c1e-7a5b-9f00-000000000001", "from the reference UI")
        ]
        say(client, "a new thread beside it", "new-one")
        # Its messages have no ON DELETE CASCADE: deleting still works, children first.
        assert client.delete("/api/threads/0196f1d2-8c1e-7a5b-9f00-000000000001").status_code == 204
        assert [t["id"] for t in client.get("/api/threads").json()["threads"]] == ["new-one"]
