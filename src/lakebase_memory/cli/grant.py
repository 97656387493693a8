"""`lakebase-memory grant PRINCIPAL`: give an app's principal what the app needs, no more.

Connects as the configured identity (the owner of the app's tables), creates the principal's
role if it is missing, grants, and checks the result; `--dry-run` prints the plan and changes
nothing; `--sql` prints the same grants as one SQL script for a DBA and connects to nothing.
What is granted, and why, is in `access/app_plan.py` and `schema/privileges.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import psycopg
import typer

from lakebase_memory.access import AsyncLakebaseClient, IdentityType
from lakebase_memory.access.app_plan import AppState, Principal, Step, build_plan, inspect
from lakebase_memory.access.app_script import grant_script
from lakebase_memory.access.principal import resolve_principal
from lakebase_memory.config import Settings, load_settings
from lakebase_memory.config.databricks import workspace_client
from lakebase_memory.config.settings import EmbeddingBackend
from lakebase_memory.database import DatabaseTarget, check_login, open_target
from lakebase_memory.errors import LakebaseMemoryError
from lakebase_memory.schema.privileges import missing_privileges, required_tables

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

OK, FAILED = "✓", "✗"


def grant(
    principal: Annotated[
        str,
        typer.Argument(
            help="An app name (granted to its service principal client id), a service "
            "principal client id, a user's email, a group, or a PostgreSQL role name.",
            show_default=False,
        ),
    ],
    identity_type: Annotated[
        IdentityType | None,
        typer.Option(
            "--type",
            case_sensitive=False,
            help="The identity type (default: SERVICE_PRINCIPAL for an app or a UUID, USER "
            "for an email or a role name).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan and its SQL; change nothing.")
    ] = False,
    as_sql: Annotated[
        bool,
        typer.Option("--sql", help="Print one SQL script with the same grants, for a DBA."),
    ] = False,
    allow_create: Annotated[
        bool,
        typer.Option(
            "--allow-create",
            help="Also grant CREATE on the app's schemas, so the app may create its own "
            "tables (default: no; the owner runs `lakebase-memory setup` instead).",
        ),
    ] = False,
) -> None:
    """Give PRINCIPAL exactly what the app needs: CONNECT, USAGE on its schemas, its table
    DML, its sequences, and default privileges for tables created later."""
    settings = load_settings()
    try:
        if as_sql:
            who = resolve_principal(principal, identity_type, _workspace(settings, None))
            typer.echo(f"-- principal: {who.name} ({who.how})", err=True)
            typer.echo(
                grant_script(who, settings.checkpoint_schema, allow_create=allow_create), nl=False
            )
            return
        with _warnings_as_notes():
            code = asyncio.run(_grant(settings, principal, identity_type, dry_run, allow_create))
    except LakebaseMemoryError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    raise typer.Exit(code)


async def _grant(
    settings: Settings,
    principal: str,
    identity_type: IdentityType | None,
    dry_run: bool,
    allow_create: bool,
) -> int:
    target = await asyncio.to_thread(open_target, settings)
    try:
        version = await check_login(target)
        typer.echo(f"database: {target.kind.value} PostgreSQL {version} at {target.location}")
        who = await asyncio.to_thread(
            resolve_principal, principal, identity_type, _workspace(settings, target)
        )
        typer.echo(f"principal: {who.name} ({_kind(who)}; {who.how})")
        async with AsyncLakebaseClient.from_target(target) as client:
            state = await inspect(client, who.name, settings.checkpoint_schema)
            if state.owner == who.name:
                typer.echo(
                    f"error: nothing granted: {who.name} is the role you are connected as; "
                    "grant gives what the app needs to the role the app logs in as, which "
                    "must be another one. Name the app's principal (its app name, service "
                    "principal client id, email or role) and run grant with the configuration "
                    "of the app's tables' owner (the identity that ran `lakebase-memory "
                    "setup`).",
                    err=True,
                )
                return 1
            plan = build_plan(who, state, settings.checkpoint_schema, allow_create=allow_create)
            if dry_run:
                _print_plan(who, state, plan)
                return 0
            if state.role_exists:
                typer.echo(f'{OK} role "{who.name}" exists')
            for step in plan:
                if not await _run_step(client, step):
                    return 1
            code = await _verify(client, who, settings.checkpoint_schema)
        _notes(who, state, settings, target)
        return code
    finally:
        await asyncio.to_thread(target.close)


async def _run_step(client: AsyncLakebaseClient, step: Step) -> bool:
    try:
        await step.action(client)
    except (LakebaseMemoryError, ValueError, psycopg.Error) as error:
        typer.echo(f"{FAILED} {step.title}")
        typer.echo(f"  why: {error}")
        typer.echo(f"  fix: {step.remedy}")
        return False
    typer.echo(f"{OK} {step.title}")
    return True


async def _verify(client: AsyncLakebaseClient, who: Principal, checkpoint_schema: str) -> int:
    assert client.pool is not None
    async with client.pool.connection() as conn:
        missing = await missing_privileges(conn, checkpoint_schema, role=who.name)
    if missing:
        typer.echo(f'{FAILED} "{who.name}" still lacks: {", ".join(missing)}')
        typer.echo(
            "  fix: these objects belong to another role; run `lakebase-memory grant` as "
            "their owner (SELECT tableowner FROM pg_tables shows it)."
        )
        return 1
    typer.echo(f'{OK} checked: "{who.name}" has every privilege the app needs')
    return 0


def _print_plan(who: Principal, state: AppState, plan: list[Step]) -> None:
    typer.echo(f'plan for "{who.name}", run as {state.owner} (dry run: nothing is changed):')
    if state.role_exists:
        typer.echo(f'  - role "{who.name}" exists: kept')
    for number, step in enumerate(plan, 1):
        typer.echo(f"  {number}. {_future(step.title)}")
        for statement in step.statements:
            typer.echo(f"       {statement};")


def _future(title: str) -> str:
    # Step titles say what was done ("created role ..."); the plan says what would be.
    for done, todo in (("created ", "create "),):
        if title.startswith(done):
            return todo + title[len(done) :]
    return "grant " + title


def _notes(who: Principal, state: AppState, settings: Settings, target: DatabaseTarget) -> None:
    vectors = settings.embedding_backend is not EmbeddingBackend.NONE
    required = required_tables(settings.checkpoint_schema, vectors=vectors)
    absent = [f"{s}.{t}" for s, t in required if (s, t) not in state.tables]
    if absent:
        which = "" if len(absent) == len(required) else f" ({', '.join(absent)})"
        typer.echo(
            f"note: some of the app's tables do not exist yet{which}; create "
            f"them as {state.owner} with `lakebase-memory setup` (the default privileges above "
            "cover them), or let the app create them (grant again with --allow-create)."
        )
    if target.lakebase is not None and who.type is IdentityType.SERVICE_PRINCIPAL:
        typer.echo(
            "note: to log in, the app also needs the instance as a database resource (Can "
            "connect and create), which lets its service principal mint credentials."
        )


class _Note(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(f"note: {record.getMessage()}", err=True)


@contextmanager
def _warnings_as_notes() -> Iterator[None]:
    """The client's warnings (e.g. plain PostgreSQL: no databricks_auth) as `note:` lines."""
    logger = logging.getLogger("lakebase_memory.access")
    handler = _Note(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _kind(who: Principal) -> str:
    return who.type.value.lower().replace("_", " ")


def _workspace(
    settings: Settings, target: DatabaseTarget | None
) -> Callable[[], WorkspaceClient] | None:
    """The SDK client for app-name lookups, or None when no workspace is configured."""
    if target is not None and target.lakebase is not None:
        return target.lakebase.workspace
    configured = settings.databricks_host or settings.databricks_config_profile
    if configured or settings.lakebase_configured:
        return lambda: workspace_client(settings)
    return None
