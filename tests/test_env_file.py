"""Editing .env.local keeps every unrelated line."""

from __future__ import annotations

from pathlib import Path

from lakebase_memory.config.env_file import update_env_file


def test_sets_replaces_disables_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / ".env.local"
    path.write_text(
        "# my notes\nMODEL_BACKEND=openai\nexport LAKEBASE_INSTANCE_NAME=old\n\n"
        "DATABASE_URL=postgresql://x/y\nOPENAI_MODEL=gpt\n"
    )
    changes = update_env_file(
        path,
        {"LAKEBASE_INSTANCE_NAME": "new-instance", "DATABRICKS_HOST": "https://w.example"},
        disable=["DATABASE_URL", "LAKEBASE_INSTANCE_NAME"],
    )
    assert path.read_text().splitlines() == [
        "# my notes",
        "MODEL_BACKEND=openai",
        "LAKEBASE_INSTANCE_NAME=new-instance",
        "",
        "# disabled by lakebase-memory configure: DATABASE_URL=postgresql://x/y",
        "OPENAI_MODEL=gpt",
        "DATABRICKS_HOST=https://w.example",
    ]
    assert changes == ["set LAKEBASE_INSTANCE_NAME", "disabled DATABASE_URL", "set DATABRICKS_HOST"]
    assert update_env_file(path, {"LAKEBASE_INSTANCE_NAME": "new-instance"}) == []


def test_values_that_need_quotes(tmp_path: Path) -> None:
    path = tmp_path / ".env.local"
    update_env_file(path, {"SYSTEM_PROMPT": 'Say "hi" #1'})
    assert path.read_text() == 'SYSTEM_PROMPT="Say \\"hi\\" #1"\n'
    from dotenv import dotenv_values

    assert dotenv_values(path)["SYSTEM_PROMPT"] == 'Say "hi" #1'
