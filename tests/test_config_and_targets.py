"""Settings sources and precedence, and how the database target is chosen."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT
from lakebase_memory.config import ModelBackend, Settings
from lakebase_memory.database import MISSING_LAKEBASE_CONFIGURATION, TargetKind, open_target
from lakebase_memory.errors import ConfigurationError

REFERENCE_TEXT = (
    "LAKEBASE_INSTANCE_NAME environment variable is required but not set. Please set it in "
    "your environment:\n  LAKEBASE_INSTANCE_NAME=<your-lakebase-instance-name>"
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("MODEL_BACKEND", "OPENAI_MODEL", "DATABASE_URL", "PGHOST", "DATABRICKS_APP_NAME",
                 "LAKEBASE_INSTANCE_NAME", "SYSTEM_PROMPT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_environment_beats_env_local_beats_env(workdir: Path, monkeypatch) -> None:
    (workdir / ".env").write_text(
        "MODEL_BACKEND=openai\nOPENAI_MODEL=from-env\nSYSTEM_PROMPT=env\n"
    )
    (workdir / ".env.local").write_text("OPENAI_MODEL=from-env-local\nSYSTEM_PROMPT=local\n")
    monkeypatch.setenv("SYSTEM_PROMPT", "process")
    settings = Settings()
    assert settings.model_backend is ModelBackend.OPENAI  # only in .env
    assert settings.openai_model == "from-env-local"  # .env.local over .env
    assert settings.system_prompt == "process"  # process environment over both


def test_defaults_without_any_configuration(workdir: Path) -> None:
    settings = Settings()
    assert settings.model_backend is ModelBackend.LOCAL
    assert settings.database_url is None and settings.checkpoint_schema == "public"
    assert settings.lakebase_memory_data_dir == Path(".lakebase-memory")


def test_blank_values_mean_unset(workdir: Path) -> None:
    (workdir / ".env.local").write_text("DATABASE_URL=\nLAKEBASE_INSTANCE_NAME=  \n")
    settings = Settings()
    assert settings.database_url is None and not settings.lakebase_configured


def test_invalid_values_are_rejected_with_the_name(workdir: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODEL_BACKEND", "gpt")
    with pytest.raises(ValueError, match="model_backend"):
        Settings()


def test_every_setting_is_documented_in_env_example() -> None:
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented == set(), "undocumented settings"
    assert documented - fields == set(), "documented settings that do not exist"


def test_database_url_target_hides_the_password(workdir: Path) -> None:
    target = open_target(Settings(database_url="postgresql://me:s3cret@db.example:6543/app"))
    assert target.kind is TargetKind.POSTGRES
    assert target.location == "postgresql://me@db.example:6543/app"
    assert "connect_timeout=10" in target.conninfo


def test_pg_variables_target(workdir: Path) -> None:
    target = open_target(Settings(pghost="pg.internal", pgport="5433", pgdatabase="mem", pguser="u",
                                  pgpassword="pw", pgsslmode="require"))  # fmt: skip
    assert target.location == "postgresql://u@pg.internal:5433/mem"
    assert "sslmode=require" in target.conninfo and "password=pw" in target.conninfo


def test_databricks_app_without_database_refuses_with_the_reference_text(workdir: Path) -> None:
    assert MISSING_LAKEBASE_CONFIGURATION == REFERENCE_TEXT
    with pytest.raises(ConfigurationError) as error:
        open_target(Settings(databricks_app_name="my-app"))
    assert str(error.value) == REFERENCE_TEXT
    assert not (workdir / ".lakebase-memory").exists()  # no embedded database was created


def test_two_databases_configured_is_an_error(workdir: Path) -> None:
    with pytest.raises(ConfigurationError, match="choose one database"):
        open_target(Settings(database_url="postgresql://x/y", lakebase_instance_name="inst"))
