"""The lakebase-memory command line."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from lakebase_memory.cli.main import app

runner = CliRunner()


def test_setup_creates_then_reports_up_to_date(database: str, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database)
    first = runner.invoke(app, ["setup"])
    assert first.exit_code == 0, first.output
    assert "database: postgres PostgreSQL 18" in first.output
    assert "✓ created checkpoint tables in public" in first.output
    assert "✓ created migration 0001_chat_tables" in first.output
    second = runner.invoke(app, ["setup"])
    assert second.exit_code == 0 and "✓ everything is up to date" in second.output
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT to_regclass('ai_chatbot.\"Chat\"')").fetchone() != (None,)


def test_setup_reports_a_refused_login(monkeypatch, tmp_path, database: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", psycopg.conninfo.make_conninfo(database, user="nobody"))
    result = runner.invoke(app, ["setup"])
    assert result.exit_code == 1
    assert 'role "nobody" does not exist' in result.output


def test_config_hides_secrets(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env.local").write_text(
        "OPENAI_API_KEY=sk-secret\nMODEL_BACKEND=echo\nDATABRICKS_TOKEN=dapi-secret\n"
    )
    result = runner.invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["openai_api_key"] == "***" and shown["model_backend"] == "echo"
    assert shown["max_output_tokens"] == 512  # a number of tokens is not a token
    assert shown["databricks_token"] == "***"
    plain = runner.invoke(app, ["config"]).output
    assert "sk-secret" not in plain and "dapi-secret" not in plain


# -- lakebase-memory threads ---------------------------------------------------------------


def conversations(database: str) -> None:
    """Three threads of two users, through the linear saver on the server's graph."""
    import asyncio
    import uuid

    from langchain_core.messages import HumanMessage

    from lakebase_memory.agent import build_graph
    from lakebase_memory.agent.models.echo import EchoChatModel
    from lakebase_memory.memory.saver import AsyncLinearPostgresSaver
    from lakebase_memory.schema import ensure_schema

    async def talk() -> None:
        await ensure_schema(database, "public")
        async with AsyncLinearPostgresSaver.from_conn_string(database) as saver:
            graph = build_graph(EchoChatModel(), "Be brief.", saver)
            for thread, user, texts in (
                ("ada-1", "ada", ["My name is Ada.", "What is my name?"]),
                ("ada-2", "ada", ["Second thread."]),
                ("bob-1", "bob", ["Bob here."]),
            ):
                for text in texts:
                    await graph.ainvoke(
                        {"messages": [HumanMessage(text, id=str(uuid.uuid4()))]},
                        {"configurable": {"thread_id": thread, "user_id": user}},
                    )

    asyncio.run(talk())


def threads_cli(*args: str):
    return runner.invoke(app, ["threads", *args])


def test_threads_list_and_show(database: str, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database)
    conversations(database)
    table = threads_cli("list")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:4] == ["THREAD", "USER", "MESSAGES", "SIZE"]
    assert [line.split()[0] for line in lines[1:]] == ["bob-1", "ada-2", "ada-1"]
    assert lines[3].split()[1:3] == ["ada", "4"]
    assert lines[3].split()[4] in ("B", "KB")  # a human size: "812 B", "1.3 KB"
    page = json.loads(threads_cli("list", "--user", "ada", "--limit", "1", "--json").output)
    assert [t["id"] for t in page["threads"]] == ["ada-2"] and page["next_cursor"]
    rest = threads_cli("list", "--user", "ada", "--cursor", page["next_cursor"], "--json")
    assert [t["id"] for t in json.loads(rest.output)["threads"]] == ["ada-1"]
    assert "more: --cursor" in threads_cli("list", "--limit", "2").output
    shown = threads_cli("show", "ada-1")
    assert shown.exit_code == 0, shown.output
    assert "messages     4" in shown.output and "user         ada" in shown.output
    assert "user: What is my name?" in shown.output
    data = json.loads(threads_cli("show", "ada-1", "--messages", "2", "--json").output)
    assert data["thread"]["message_count"] == 4 and data["thread"]["size_bytes"] > 0
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][0]["content"] == "What is my name?"
    bad = threads_cli("list", "--cursor", "garbage")
    assert bad.exit_code == 1 and "Invalid cursor" in bad.output


def test_threads_delete_needs_yes_and_known_threads(database: str, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database)
    conversations(database)
    unknown = threads_cli("show", "nope")
    assert unknown.exit_code == 1 and "no thread 'nope'" in unknown.output
    refused = threads_cli("delete", "ada-1")
    assert refused.exit_code == 1 and "--yes" in refused.output
    mixed = threads_cli("delete", "ada-1", "nope", "--yes")
    assert mixed.exit_code == 1 and "'nope'" in mixed.output
    assert threads_cli("show", "ada-1").exit_code == 0  # nothing deleted on an error
    deleted = threads_cli("delete", "ada-1", "ada-2", "--yes", "--json")
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.output)["threads"] == 2
    listed = json.loads(threads_cli("list", "--json").output)["threads"]
    assert [t["id"] for t in listed] == ["bob-1"]
    with psycopg.connect(database) as conn:
        left = conn.execute(
            "SELECT count(*) FROM ai_chatbot.checkpoint_messages WHERE thread_id LIKE 'ada-%'"
        ).fetchone()
    assert left == (0,)


def test_threads_prune_and_erase_user(database: str, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database)
    conversations(database)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "UPDATE ai_chatbot.checkpoint_threads SET updated_at = now() - interval '40 days' "
            "WHERE thread_id = 'ada-1'"
        )
    nothing = threads_cli("prune")
    assert nothing.exit_code == 1 and "--older-than-days" in nothing.output
    dry = threads_cli("prune", "--older-than-days", "30", "--keep-per-user", "1", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 expired and 0 excess" in dry.output and "dry run" in dry.output
    monkeypatch.setenv("MEMORY_MAX_THREADS_PER_USER", "1")  # the default of --keep-per-user
    pruned = threads_cli("prune", "--older-than-days", "30", "--batch-size", "1", "--json")
    assert pruned.exit_code == 0, pruned.output
    report = json.loads(pruned.output)
    assert (report["expired"], report["excess"], report["dry_run"]) == (1, 0, False)
    assert report["deleted"]["threads"] == 1
    trimmed = threads_cli("prune", "--older-than-days", "0.0000001", "--keep-latest-checkpoint")
    assert trimmed.exit_code == 0 and "trimmed 2 old thread(s)" in trimmed.output
    refused = threads_cli("erase-user", "ada")
    assert refused.exit_code == 1 and "--yes" in refused.output
    erased = threads_cli("erase-user", "ada", "--yes", "--json")
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.output)["deleted"]["threads"] == 1
    listed = json.loads(threads_cli("list", "--json").output)["threads"]
    assert [t["id"] for t in listed] == ["bob-1"]


def test_threads_commands_report_an_unreachable_database(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    for args in (["list"], ["show", "x"], ["delete", "x", "--yes"], ["erase-user", "u", "--yes"]):
        result = threads_cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "error:" in result.output and "Traceback" not in result.output


def test_threads_subcommands_are_registered() -> None:
    shown = runner.invoke(app, ["threads", "--help"]).output
    for name in ("list", "show", "delete", "prune", "erase-user", "import-stock", "export-stock"):
        assert name in shown


# -- one login per command ------------------------------------------------------------------

CLI_APP = "threads-cli-under-test"  # the application_name the command under test logs in with

# PostgreSQL (17+) runs login event triggers at every login to the database, before the
# session is usable: a real count of logins, including those that fail later in the command.
LOGIN_TRIGGER = """
CREATE SCHEMA login_count;
CREATE TABLE login_count.logins (pid int, application text, username text);
CREATE FUNCTION login_count.record() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO login_count.logins
  VALUES (pg_backend_pid(), current_setting('application_name'), session_user);
EXCEPTION WHEN OTHERS THEN NULL;  -- never refuse a login
END $$;
CREATE EVENT TRIGGER login_count ON login EXECUTE FUNCTION login_count.record();
"""


@contextmanager
def counted_logins(admin: str) -> Iterator[Callable[[], int]]:
    """Count the logins of application CLI_APP to the database of `admin` (a superuser's
    conninfo) from now on; the trigger and its table are removed at the end."""
    counter = make_conninfo(admin, application_name="login-counter")
    with psycopg.connect(counter, autocommit=True) as conn:
        conn.execute(LOGIN_TRIGGER)

    def count() -> int:
        with psycopg.connect(counter, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM login_count.logins WHERE application = %s", (CLI_APP,)
            ).fetchone()
        return int(row[0]) if row else 0

    try:
        yield count
    finally:
        with psycopg.connect(counter, autocommit=True) as conn:
            conn.execute("DROP EVENT TRIGGER login_count")
            conn.execute("DROP SCHEMA login_count CASCADE")


def test_each_threads_command_logs_in_once(database: str, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    conversations(database)
    monkeypatch.setenv("DATABASE_URL", make_conninfo(database, application_name=CLI_APP))
    commands = [
        ["list"],
        ["show", "ada-1"],
        ["delete", "ada-2", "--yes"],  # checks the thread exists, then deletes it
        ["prune", "--older-than-days", "30", "--dry-run"],
        ["prune", "--older-than-days", "30"],
        ["erase-user", "bob", "--yes"],
        ["import-stock", "--all", "--dry-run"],
        ["import-stock", "--all"],
        ["export-stock", "ada-1", "--dry-run"],
    ]
    with counted_logins(database) as logins:
        for args in commands:
            before = logins()
            result = threads_cli(*args)
            assert result.exit_code == 0, (args, result.output)
            assert logins() - before == 1, args
        # Failures too: an unknown thread, a refused deletion.
        for args in (["delete", "ada-1", "nope", "--yes"], ["delete", "ada-1"]):
            before = logins()
            assert threads_cli(*args).exit_code == 1
            assert logins() - before == 1, args
    assert threads_cli("show", "ada-1").exit_code == 0  # nothing deleted on an error


def test_threads_commands_keep_the_refused_login_message(
    database: str, monkeypatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    conversations(database)
    monkeypatch.setenv("DATABASE_URL", make_conninfo(database, user="nobody"))
    for args in (["list"], ["delete", "ada-1", "--yes"], ["import-stock", "--all"]):
        result = threads_cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: The memory database is not available: ")
        assert 'role "nobody" does not exist' in result.output
        assert "`lakebase-memory doctor` finds the cause." in result.output
        assert "Traceback" not in result.output


def test_a_threads_write_by_a_role_without_the_apps_privileges(
    database: str, monkeypatch, tmp_path
) -> None:
    """The tables are current but the role may not use them: the write stops with the
    privileges it lacks (the set-up's message), and changes nothing."""
    monkeypatch.chdir(tmp_path)
    conversations(database)
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS outsider")
        admin.execute("CREATE ROLE outsider LOGIN")
    try:
        monkeypatch.setenv("DATABASE_URL", make_conninfo(database, user="outsider"))
        result = threads_cli("prune", "--older-than-days", "1")
        assert result.exit_code == 1, result.output
        assert result.output.startswith("error: Role 'outsider' lacks privileges the app needs: ")
        assert "Traceback" not in result.output
    finally:
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute("DROP OWNED BY outsider")
            admin.execute("DROP ROLE outsider")
    monkeypatch.setenv("DATABASE_URL", database)
    assert "ada-1" in threads_cli("list").output  # nothing was pruned


def use_lakebase(monkeypatch, ll, token: str) -> None:
    """The CLI's environment: the local Lakebase's instance, as the identity of `token`."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "LAKEBASE_", "PG", "DATABASE_URL")):
            monkeypatch.delenv(name)
    for name, value in {
        "DATABRICKS_HOST": ll.host,
        "DATABRICKS_TOKEN": token,
        "DATABRICKS_AUTH_TYPE": "pat",
        "LAKEBASE_INSTANCE_NAME": ll.instance_name,
        "PGPORT": str(ll.pg_port),
        "PGAPPNAME": CLI_APP,
    }.items():
        monkeypatch.setenv(name, value)


def test_threads_on_lakebase_log_in_once(local_lakebase, monkeypatch, tmp_path) -> None:
    import asyncio
    import uuid

    from lakebase_memory.schema import ensure_schema

    ll = local_lakebase
    monkeypatch.chdir(tmp_path)
    owner = ll.conninfo(ll.owner, ll.issue_database_credential(ll.owner))
    asyncio.run(ensure_schema(owner))
    use_lakebase(monkeypatch, ll, ll.owner_token)
    with counted_logins(ll.admin_conninfo()) as logins:
        listed = threads_cli("list", "--json")
        assert listed.exit_code == 0, listed.output
        assert logins() == 1
        deleted = threads_cli("delete", f"none-{uuid.uuid4()}", "--yes")
        assert deleted.exit_code == 1 and "no thread" in deleted.output
        assert logins() == 2

    user = ll.add_user(f"norole-{uuid.uuid4().hex[:8]}@example.com")
    ll.grant_can_use(user.name)
    use_lakebase(monkeypatch, ll, user.token)
    refused = threads_cli("list")
    assert refused.exit_code == 1
    assert refused.output.startswith(
        f"error: Failed to connect to Lakebase instance '{ll.instance_name}'. Please verify:"
    )
    assert f'PostgreSQL role "{user.name}" does not exist on the instance' in refused.output
    assert f"SELECT databricks_create_role('{user.name}', 'USER');" in refused.output
