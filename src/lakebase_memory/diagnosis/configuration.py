"""Checks 1 and 8: the configuration names one database, and a Databricks App has its resource."""

from __future__ import annotations

from pydantic import ValidationError

from lakebase_memory.config import Settings
from lakebase_memory.database.lakebase import configured_targets, failure_text, lakebase_spec
from lakebase_memory.database.targets import MISSING_LAKEBASE_CONFIGURATION, describe_conninfo
from lakebase_memory.diagnosis.context import Context
from lakebase_memory.diagnosis.result import (
    CheckResult,
    failed,
    not_applicable,
    passed,
    skipped,
)
from lakebase_memory.errors import ConfigurationError

CONFIGURATION = "configuration"
APP_RESOURCE = "app resource"
WHERE = "the environment, .env.local or .env"


async def check_configuration(ctx: Context) -> CheckResult:
    try:
        settings = ctx.load_settings()
    except ValidationError as error:
        names = sorted({str(e["loc"][0]).upper() for e in error.errors() if e["loc"]})
        return failed(
            CONFIGURATION,
            f"the settings are invalid: {_validation_summary(error)}",
            f"Correct {', '.join(names) or 'the settings'} in {WHERE}; "
            "`lakebase-memory config` shows every value in use.",
        )
    ctx.settings = settings
    try:
        ctx.spec = lakebase_spec(settings)
    except ConfigurationError as error:
        return failed(CONFIGURATION, str(error), _spec_fix(settings))
    if ctx.spec is not None and settings.database_url:
        return failed(
            CONFIGURATION,
            f"both DATABASE_URL and {_lakebase_source(settings)} are set: two databases.",
            f"Remove DATABASE_URL from {WHERE} to use Lakebase, or the LAKEBASE_* lines to use "
            "that URL.",
        )
    no_database = not (ctx.spec or settings.database_url or settings.pghost)
    if no_database and settings.on_databricks_app:  # open_target refuses an embedded one there
        return failed(
            CONFIGURATION,
            f"{MISSING_LAKEBASE_CONFIGURATION}\n(on Databricks App "
            f"'{settings.databricks_app_name}', which has no database: nothing to connect to)",
            _add_resource_steps(settings),
        )
    return passed(CONFIGURATION, _describe_target(ctx, settings))


async def check_app_resource(ctx: Context) -> CheckResult:
    settings = ctx.settings
    if settings is None:
        return skipped(APP_RESOURCE, "skipped: the settings could not be read")
    if not settings.on_databricks_app:
        return not_applicable(
            APP_RESOURCE, "not running as a Databricks App (DATABRICKS_APP_NAME is not set)"
        )
    if settings.pghost and settings.pguser:
        return passed(
            APP_RESOURCE,
            f"app '{settings.databricks_app_name}' has its database resource: PGHOST="
            f"{settings.pghost}, PGUSER={settings.pguser} (its service principal's role)",
        )
    cause = (
        "the app has no database resource: the platform injected no PGHOST/PGUSER, so the app's "
        "service principal has no Postgres role on the instance"
    )
    return failed(
        APP_RESOURCE,
        failure_text(ctx.lakebase_name, settings, cause),
        _add_resource_steps(settings),
    )


def _add_resource_steps(settings: Settings) -> str:
    instance = settings.lakebase_instance_name or "<instance>"
    # `grant` takes the client id, or the app's name (it looks the client id up).
    principal = settings.databricks_client_id or settings.databricks_app_name
    return (
        f"Add the Lakebase instance to app '{settings.databricks_app_name}' as a database "
        "resource: in the Databricks UI open the app, Edit > App resources > Add resource > "
        f"Database, instance '{instance}', database databricks_postgres, permission Can connect "
        "and create (or keep the `database` resource of databricks.yml and run "
        "`databricks bundle deploy`); set LAKEBASE_INSTANCE_NAME in app.yaml; redeploy. Then, "
        f"as the instance owner: `lakebase-memory grant {principal}`."
    )


def _lakebase_source(settings: Settings) -> str:
    if settings.lakebase_instance_name:
        return "LAKEBASE_INSTANCE_NAME"
    if settings.lakebase_autoscaling_endpoint:
        return "LAKEBASE_AUTOSCALING_ENDPOINT"
    if settings.lakebase_autoscaling_project or settings.lakebase_autoscaling_branch:
        return "LAKEBASE_AUTOSCALING_PROJECT + LAKEBASE_AUTOSCALING_BRANCH"
    return "PGHOST/PGUSER (injected by the app's database resource)"


def _describe_target(ctx: Context, settings: Settings) -> str:
    spec = ctx.spec
    if spec is not None:
        text = f"Lakebase {spec.kind.value} '{spec.value}' (from {_lakebase_source(settings)})"
        if spec.user:
            text += f", logging in as PGUSER {spec.user}"
        return text
    if settings.database_url:
        ignored = " (PGHOST is ignored: DATABASE_URL wins)" if settings.pghost else ""
        return f"PostgreSQL from DATABASE_URL: {describe_conninfo(settings.database_url)}{ignored}"
    if settings.pghost:
        return f"PostgreSQL from the PG* variables: host {settings.pghost}"
    return (
        f"the embedded PostgreSQL in {settings.lakebase_memory_data_dir}/ (no LAKEBASE_*, "
        "DATABASE_URL or PGHOST set; `lakebase-memory configure` points the app at Lakebase)"
    )


def _spec_fix(settings: Settings) -> str:
    chosen = configured_targets(settings)
    if len(chosen) > 1:
        return f"Keep one of {', '.join(chosen)} and remove the others from {WHERE}."
    if settings.lakebase_autoscaling_endpoint:
        return (
            "Set LAKEBASE_AUTOSCALING_ENDPOINT=projects/<project>/branches/<branch>/endpoints/"
            f"<endpoint> in {WHERE}."
        )
    return (
        "Set both LAKEBASE_AUTOSCALING_PROJECT and LAKEBASE_AUTOSCALING_BRANCH, or "
        f"LAKEBASE_AUTOSCALING_ENDPOINT alone, in {WHERE}."
    )


def _validation_summary(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']).upper()}: {e['msg']}" for e in error.errors()
    )
