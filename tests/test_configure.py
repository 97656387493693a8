"""`lakebase-memory configure` against the local Lakebase, with the real SDK."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lakebase_memory.cli.main import app
from lakebase_memory.config import Settings
from lakebase_memory.local_lakebase import LocalLakebase

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["configure", *args])


def test_writes_env_local_after_checking_each_value(local_lakebase: LocalLakebase,
                                                    tmp_path: Path) -> None:  # fmt: skip
    env_file = tmp_path / ".env.local"
    env_file.write_text(
        "MODEL_BACKEND=echo\nDATABASE_URL=postgresql://old/db\n# a note\n"
        "DATABRICKS_CLIENT_ID=old-sp\n"  # another sign-in method: must not stay beside the new
    )
    result = run("--host", local_lakebase.host, "--token", local_lakebase.owner_token,
                 "--instance", local_lakebase.instance_name, "--port", str(local_lakebase.pg_port),
                 "--env-file", str(env_file))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"✓ authenticated to {local_lakebase.host} as {local_lakebase.owner}" in result.output
    assert f"✓ instance '{local_lakebase.instance_name}' found: AVAILABLE" in result.output
    assert "✓ a database credential can be minted" in result.output
    lines = env_file.read_text().splitlines()
    assert lines[:4] == [
        "MODEL_BACKEND=echo",
        "# disabled by lakebase-memory configure: DATABASE_URL=postgresql://old/db",
        "# a note",
        "# disabled by lakebase-memory configure: DATABRICKS_CLIENT_ID=old-sp",
    ]
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.lakebase_instance_name == local_lakebase.instance_name
    assert settings.databricks_host == local_lakebase.host
    assert settings.pgport == str(local_lakebase.pg_port)
    assert settings.database_url is None


def test_autoscaling_endpoint_and_branch(local_lakebase: LocalLakebase, tmp_path: Path) -> None:
    env_file = tmp_path / ".env.local"
    auth = ["--host", local_lakebase.host, "--token", local_lakebase.owner_token,
            "--env-file", str(env_file)]  # fmt: skip
    assert run(*auth, "--endpoint", local_lakebase.endpoint_name).exit_code == 0
    assert f"LAKEBASE_AUTOSCALING_ENDPOINT={local_lakebase.endpoint_name}" in env_file.read_text()
    result = run(*auth, "--project", local_lakebase.project, "--branch", local_lakebase.branch)
    assert result.exit_code == 0, result.output
    text = env_file.read_text()
    assert f"LAKEBASE_AUTOSCALING_PROJECT={local_lakebase.project}" in text
    assert "# disabled by lakebase-memory configure: LAKEBASE_AUTOSCALING_ENDPOINT=" in text


def test_a_target_in_the_shell_environment_does_not_join_the_configured_one(
    local_lakebase: LocalLakebase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEBASE_INSTANCE_NAME", "left-over-instance")
    env_file = tmp_path / ".env.local"
    auth = ["--host", local_lakebase.host, "--token", local_lakebase.owner_token]
    result = run(*auth, "--endpoint", local_lakebase.endpoint_name, "--env-file", str(env_file))
    assert result.exit_code == 0, result.output
    assert f"LAKEBASE_AUTOSCALING_ENDPOINT={local_lakebase.endpoint_name}" in env_file.read_text()


def test_says_exactly_what_is_wrong(local_lakebase: LocalLakebase, tmp_path: Path) -> None:
    env_file = tmp_path / ".env.local"
    bad_token = run("--host", local_lakebase.host, "--token", "dapi-wrong",
                    "--instance", "x", "--env-file", str(env_file))  # fmt: skip
    assert bad_token.exit_code == 1
    assert "✗ Databricks refused the credentials" in bad_token.output
    assert f"host={local_lakebase.host}" in bad_token.output
    wrong = run("--host", local_lakebase.host, "--token", local_lakebase.owner_token,
                "--instance", "no-such-instance", "--env-file", str(env_file))  # fmt: skip
    assert wrong.exit_code == 1
    assert "no-such-instance" in wrong.output
    assert f"Instances in this workspace: {local_lakebase.instance_name}" in wrong.output
    both = run("--host", local_lakebase.host, "--token", local_lakebase.owner_token,
               "--instance", "a", "--endpoint", "b", "--env-file", str(env_file))  # fmt: skip
    assert both.exit_code == 1 and "give one of" in both.output
    malformed = run("--host", local_lakebase.host, "--token", local_lakebase.owner_token,
                    "--endpoint", "my-endpoint", "--env-file", str(env_file))  # fmt: skip
    assert malformed.exit_code == 1
    assert "✗ LAKEBASE_AUTOSCALING_ENDPOINT 'my-endpoint' is not an endpoint name" in (
        malformed.output
    )
    assert not env_file.exists()  # nothing written on failure
