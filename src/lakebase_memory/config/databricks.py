"""Databricks SDK configuration from the settings.

The SDK reads only the process environment; these settings also come from `.env.local` and
`.env` (the reference documents `.env.local` but its code never read it for the SDK).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lakebase_memory.config.settings import Settings
from lakebase_memory.errors import ConfigurationError

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

SDK_FIELDS = {
    "databricks_host": "host",
    "databricks_token": "token",
    "databricks_config_profile": "profile",
    "databricks_client_id": "client_id",
    "databricks_client_secret": "client_secret",
    "databricks_auth_type": "auth_type",
}
INSTALL_HINT = "The Databricks SDK is missing: `uv sync --extra databricks`."


def sdk_config(settings: Settings, **overrides: Any) -> Config:
    """The SDK's Config with whatever the settings hold; the SDK resolves the rest.

    `overrides` are further Config arguments, e.g. `retry_timeout_seconds`.
    """
    try:
        from databricks.sdk.core import Config
    except ImportError as error:
        raise ConfigurationError(INSTALL_HINT) from error
    kwargs: dict[str, Any] = {
        sdk_name: getattr(settings, field)
        for field, sdk_name in SDK_FIELDS.items()
        if getattr(settings, field)
    }
    return Config(**kwargs, **overrides)


def workspace_client(settings: Settings, **overrides: Any) -> WorkspaceClient:
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(config=sdk_config(settings, **overrides))


def describe_config(config: Config) -> str:
    """Which authentication the SDK used, for messages: host, auth type, profile, client id."""
    parts = [f"host={config.host}", f"auth_type={config.auth_type}"]
    if config.profile:
        parts.append(f"profile={config.profile}")
    if config.client_id:
        parts.append(f"client_id={config.client_id}")
    return ", ".join(parts)
