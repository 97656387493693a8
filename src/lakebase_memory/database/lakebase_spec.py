"""Which Lakebase the settings name, and the texts a user sees when it cannot be reached.

Configured by exactly one of: LAKEBASE_INSTANCE_NAME (a provisioned instance, by name or by
host, since `valueFrom` in app.yaml yields the host), LAKEBASE_AUTOSCALING_ENDPOINT, or
LAKEBASE_AUTOSCALING_PROJECT + LAKEBASE_AUTOSCALING_BRANCH. Inside a Databricks App with a
database resource, the injected PGHOST/PGUSER/PGDATABASE are enough. The connector that logs in
is in `lakebase.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from lakebase_memory.config import Settings
from lakebase_memory.errors import ConfigurationError, DatabaseUnavailableError

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient


DATABASE = "databricks_postgres"
DEFAULT_PORT = 5432


class LakebaseKind(StrEnum):
    INSTANCE = "instance"  # provisioned, by name
    INSTANCE_HOST = "instance host"  # provisioned, by its DNS name
    ENDPOINT = "autoscaling endpoint"
    BRANCH = "autoscaling branch"


@dataclass(frozen=True)
class LakebaseSpec:
    kind: LakebaseKind
    value: str  # instance name or host, endpoint name, or projects/{p}/branches/{b}
    user: str | None = None  # PGUSER injected by Databricks Apps
    port: int = DEFAULT_PORT
    database: str = DATABASE
    sslmode: str = "require"


def configured_targets(settings: Settings) -> list[str]:
    """The Lakebase target settings that are set (more than one is a contradiction)."""
    return [
        name
        for name, value in (
            ("LAKEBASE_INSTANCE_NAME", settings.lakebase_instance_name),
            ("LAKEBASE_AUTOSCALING_ENDPOINT", settings.lakebase_autoscaling_endpoint),
            (
                "LAKEBASE_AUTOSCALING_PROJECT + LAKEBASE_AUTOSCALING_BRANCH",
                settings.lakebase_autoscaling_project or settings.lakebase_autoscaling_branch,
            ),
        )
        if value
    ]


def lakebase_spec(settings: Settings) -> LakebaseSpec | None:
    """The Lakebase configuration in the settings, or None; contradictions are errors."""
    chosen = configured_targets(settings)
    if len(chosen) > 1:
        raise ConfigurationError(
            f"More than one Lakebase target is configured ({', '.join(chosen)}): keep exactly "
            "one of LAKEBASE_INSTANCE_NAME, LAKEBASE_AUTOSCALING_ENDPOINT, or "
            "LAKEBASE_AUTOSCALING_PROJECT with LAKEBASE_AUTOSCALING_BRANCH."
        )
    common: dict[str, Any] = {
        "port": int(settings.pgport or DEFAULT_PORT),
        "database": settings.pgdatabase or DATABASE,
        "sslmode": settings.pgsslmode or "require",
    }
    if settings.lakebase_instance_name:
        name = settings.lakebase_instance_name.strip()
        kind = LakebaseKind.INSTANCE_HOST if _looks_like_host(name) else LakebaseKind.INSTANCE
        return LakebaseSpec(kind, name, **common)
    if settings.lakebase_autoscaling_endpoint:
        endpoint = settings.lakebase_autoscaling_endpoint.strip()
        if not re.fullmatch(r"projects/[^/]+/branches/[^/]+/endpoints/[^/]+", endpoint):
            raise ConfigurationError(
                f"LAKEBASE_AUTOSCALING_ENDPOINT '{endpoint}' is not an endpoint name: expected "
                "projects/<project>/branches/<branch>/endpoints/<endpoint>."
            )
        return LakebaseSpec(LakebaseKind.ENDPOINT, endpoint, **common)
    if settings.lakebase_autoscaling_project or settings.lakebase_autoscaling_branch:
        if not (settings.lakebase_autoscaling_project and settings.lakebase_autoscaling_branch):
            raise ConfigurationError(
                "Both LAKEBASE_AUTOSCALING_PROJECT and LAKEBASE_AUTOSCALING_BRANCH are required "
                "(or set LAKEBASE_AUTOSCALING_ENDPOINT instead)."
            )
        branch = _branch_name(
            settings.lakebase_autoscaling_project, settings.lakebase_autoscaling_branch
        )
        return LakebaseSpec(LakebaseKind.BRANCH, branch, **common)
    if settings.on_databricks_app and settings.pghost and not settings.pgpassword:
        # A Databricks App with a database resource: PG* are injected, without a password.
        return LakebaseSpec(LakebaseKind.INSTANCE_HOST, settings.pghost, user=settings.pguser,
                            **common)  # fmt: skip
    return None


def _looks_like_host(value: str) -> bool:
    return "." in value or value == "localhost"


def _branch_name(project: str, branch: str) -> str:
    project = project.strip().removeprefix("projects/")
    branch = branch.strip()
    if branch.startswith("projects/"):
        return branch
    return f"projects/{project}/branches/{branch.removeprefix('branches/')}"


# --- user-facing texts (REFERENCE 7), followed by the specific cause -----------------------


def failure_text(name: str, settings: Settings, cause: str) -> str:
    if settings.on_databricks_app:
        head = (
            f"Failed to connect to Lakebase instance '{name}'. The App Service Principal for "
            f"'{settings.databricks_app_name}' may not have access.\n"
            "To give it access:\n"
            "1. Open the app in the Databricks UI and click Edit\n"
            "2. Go to App resources > Add resource\n"
            f"3. Add the Lakebase instance '{name}' with Can connect and create\n"
            "4. Grant the Postgres privileges (README: Deploy to Databricks Apps)"
        )
    else:
        head = (
            f"Failed to connect to Lakebase instance '{name}'. Please verify:\n"
            "1. The instance name is correct\n"
            "2. You have the necessary permissions to access the instance\n"
            "3. Your Databricks authentication is configured correctly"
        )
    return f"{head}\nCause: {cause}"


def instance_names(w: WorkspaceClient) -> list[str]:
    """The workspace's Lakebase instances, for hints; empty when they cannot be listed."""
    try:
        return sorted(str(i.name) for i in w.database.list_database_instances())
    except Exception:  # only a hint: the message is useful without it
        return []


class LakebaseError(DatabaseUnavailableError):
    """A Lakebase connection failed; the message is the reference text plus the cause."""
