"""`lakebase-memory configure`: write `.env.local` for Lakebase, checking each value live."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lakebase_memory.config.databricks import SDK_FIELDS
from lakebase_memory.config.env_file import update_env_file

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
        from databricks.sdk.errors import DatabricksError, NotFound
    except ImportError as error:
        raise fail("the Databricks SDK is missing: `uv sync --extra databricks`.") from error

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

    values: dict[str, str] = {}
    try:
        if instance:
            found = w.database.get_database_instance(instance)
            state = getattr(found.state, "value", found.state)
            ok(f"instance '{instance}' found: {state}, host {found.read_write_dns}")
            w.database.generate_database_credential(
                request_id=str(uuid.uuid4()), instance_names=[instance]
            )
            values["LAKEBASE_INSTANCE_NAME"] = instance
        elif endpoint:
            found_endpoint = w.postgres.get_endpoint(endpoint)
            ok(f"endpoint '{endpoint}' found: host {found_endpoint.status.hosts.host}")
            w.postgres.generate_database_credential(endpoint=endpoint)
            values["LAKEBASE_AUTOSCALING_ENDPOINT"] = endpoint
        else:
            if not (project and branch):
                raise fail("--project and --branch go together.")
            parent = f"projects/{project}/branches/{branch}"
            endpoints = list(w.postgres.list_endpoints(parent=parent))
            if not endpoints:
                raise fail(f"branch {parent} has no endpoints.")
            ok(f"branch {parent} found with {len(endpoints)} endpoint(s)")
            w.postgres.generate_database_credential(endpoint=str(endpoints[0].name))
            values["LAKEBASE_AUTOSCALING_PROJECT"] = project
            values["LAKEBASE_AUTOSCALING_BRANCH"] = branch
    except NotFound as error:
        raise fail(f"{error}. {_available(w)}") from error
    except DatabricksError as error:
        raise fail(f"the workspace refused: {error}") from error
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


def _available(w: WorkspaceClient) -> str:
    try:
        names = [str(i.name) for i in w.database.list_database_instances()]
    except Exception:  # only a hint
        return ""
    return f"Instances in this workspace: {', '.join(names)}." if names else ""
