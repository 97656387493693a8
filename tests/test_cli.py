"""The lakebase-memory command line."""

from __future__ import annotations

import json

import psycopg
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
    (tmp_path / ".env.local").write_text("OPENAI_API_KEY=sk-secret\nMODEL_BACKEND=echo\n")
    result = runner.invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["openai_api_key"] == "***" and shown["model_backend"] == "echo"
    assert "sk-secret" not in runner.invoke(app, ["config"]).output
