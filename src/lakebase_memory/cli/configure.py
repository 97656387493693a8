"""`lakebase-memory configure`: write `.env.local` for Lakebase, checking each value live."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lakebase_memory.config import Settings
from lakebase_memory.config.databricks import INSTALL_HINT, SDK_FIELDS
from lakebase_memory.config.env_file import update_env_file
from lakebase_memory.database.lakebase import (
    LakebaseConnector,
    LakebaseKind,
    lakebase_spec,
)
from lakebase_memory.errors import LakebaseMemoryError

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

LAKEBASE_KEYS = (
    "LAKEBASE_INSTANCE_NAME",
    "LAKEBASE_AUTOSCALING_ENDPOINT",
    "LAKEBASE_AUTOSCALING_PROJECT",
    "LAKEBASE_AUTOSCALING_BRANCH",
)
# Every setting the SDK authenticates with: a new one must not meet an old one's leftovers.
AUTH_KEYS = tuple(field.upper() for field in SDK_FIELDS)


def ok(message: str) -> None:
    typer.echo(f"✓ {message}")


def fail(message: str) -> typer.Exit:
    typer.echo(f"✗ {message}", err=True)
    return typer.Exit(1)


def configure(
    profile: Annotated[str | None, typer.Option(help="Databricks CLI profile to use.")] = None,
    host: Annotated[str | None, typer.Option(help="Workspace URL (instead of a profile).")] = None,
    token: Annotated[
        str | None, typer.Option(help="Token for --host (else DATABRICKS_TOKEN).")
    ] = None,
    instance: Annotated[str | None, typer.Option(help="Provisioned instance name.")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="Autoscaling endpoint projects/P/branches/B/endpoints/E.")
    ] = None,
    project: Annotated[str | None, typer.Option(help="Autoscaling project.")] = None,
    branch: Annotated[str | None, typer.Option(help="Autoscaling branch (with --project).")] = None,
    port: Annotated[int | None, typer.Option(help="PostgreSQL port if not 5432 (PGPORT).")] = None,
    env_file: Annotated[Path, typer.Option(help="File to write.")] = Path(".env.local"),
) -> None:
    """Point the app at Lakebase: authenticate, find the instance, write .env.local."""
    interactive = sys.stdin.isatty()
    try:
        from databricks.sdk import WorkspaceClient
    except ImportError as error:
        raise fail(INSTALL_HINT) from error

    if not (profile or host) and interactive:
        answer = typer.prompt("Databricks profile name or workspace URL", default="DEFAULT")
        profile, host = (None, answer) if answer.startswith("http") else (answer, None)
    if host and not token and interactive:
        token = typer.prompt("Token (leave empty to use DATABRICKS_TOKEN)", default="",
                             hide_input=True, show_default=False) or None  # fmt: skip
    w = _authenticate(WorkspaceClient, profile, host, token)

    targets = [bool(instance), bool(endpoint), bool(project or branch)]
    if sum(targets) > 1:
        raise fail("give one of --instance, --endpoint, or --project with --branch.")
    if not any(targets):
        if not interactive:
            raise fail("give --instance, --endpoint, or --project and --branch.")
        instance = typer.prompt("Lakebase instance name (or an autoscaling endpoint name)")
        if instance.startswith("projects/"):
            endpoint, instance = instance, None

    if (project or branch) and not (project and branch):
        raise fail("--project and --branch go together.")
    values = {
        key: value
        for key, value in (
            ("LAKEBASE_INSTANCE_NAME", instance),
            ("LAKEBASE_AUTOSCALING_ENDPOINT", endpoint),
            ("LAKEBASE_AUTOSCALING_PROJECT", project),
            ("LAKEBASE_AUTOSCALING_BRANCH", branch),
        )
        if value
    }
    # The app's own connector finds the target and mints a credential, exactly as the app
    # will at start-up. Every target key is given (None when unset), so that a target set in
    # the shell's environment cannot add itself to the one being configured.
    fields = {key.lower(): values.get(key) for key in LAKEBASE_KEYS}
    settings = Settings(_env_file=None, **fields)  # type: ignore[call-arg, arg-type]
    try:
        spec = lakebase_spec(settings)
        assert spec is not None
        connector = LakebaseConnector(spec, settings, w)
        connector.resolve()
        if spec.kind is LakebaseKind.BRANCH:
            ok(f"branch {spec.value} found: read-write endpoint {connector.endpoint}")
        elif connector.state:
            ok(f"instance '{connector.name}' found: {connector.state}, host {connector.host}")
        else:
            ok(f"'{connector.name}' found: host {connector.host}")
        connector.password_blocking()
    except LakebaseMemoryError as error:  # a malformed name, or the connector's failure
        raise fail(str(error)) from error
    ok("a database credential can be minted")

    if profile:
        values["DATABRICKS_CONFIG_PROFILE"] = profile
    else:
        values["DATABRICKS_HOST"] = str(w.config.host)
        if token:
            values["DATABRICKS_TOKEN"] = token
    if port:
        values["PGPORT"] = str(port)
    # Other targets would conflict with this one: comment them out, keep everything else.
    disable = [*LAKEBASE_KEYS, *AUTH_KEYS, "DATABASE_URL", "PGHOST", "PGPASSWORD"]
    changes = update_env_file(env_file, values, disable)
    ok(f"wrote {env_file}: {', '.join(changes) if changes else 'already up to date'}")
    typer.echo("Start the app with: uv run start-app")


def _authenticate(
    client: type[WorkspaceClient], profile: str | None, host: str | None, token: str | None
) -> WorkspaceClient:
    from databricks.sdk.errors import DatabricksError

    kwargs: dict[str, Any] = {"retry_timeout_seconds": 30}
    if profile:
        kwargs["profile"] = profile
    if host:
        kwargs["host"] = host
    if token:
        kwargs["token"] = token
    used = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k in ("profile", "host"))
    try:
        from databricks.sdk.core import Config

        w = client(config=Config(**kwargs))
        me = w.current_user.me()
    except ValueError as error:
        raise fail(f"cannot configure Databricks authentication ({used}): {error}") from error
    except DatabricksError as error:
        raise fail(f"Databricks refused the credentials ({used}): {error}") from error
    except OSError as error:
        raise fail(f"cannot reach the workspace ({used}): {error}") from error
    ok(f"authenticated to {w.config.host} as {me.user_name} ({w.config.auth_type})")
    return w
