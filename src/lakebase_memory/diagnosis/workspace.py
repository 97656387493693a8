"""Checks 2-4, on a Lakebase target: who the workspace says we are, the instance or endpoint,
and a database credential. Blocking SDK calls run in threads."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lakebase_memory.config import Settings
from lakebase_memory.config.databricks import describe_config, workspace_client
from lakebase_memory.database.lakebase import (
    LakebaseConnector,
    LakebaseKind,
    failure_text,
    instance_names,
)
from lakebase_memory.diagnosis.context import Context
from lakebase_memory.diagnosis.result import CheckResult, failed, not_applicable, passed
from lakebase_memory.errors import ConfigurationError, DatabaseUnavailableError, first_line

if TYPE_CHECKING:
    from databricks.sdk.core import Config

AUTHENTICATION = "authentication"
INSTANCE = "instance"
CREDENTIAL = "credential"
NOT_LAKEBASE = "not a Lakebase target: no Databricks {what} involved"
# The SDK retries an unreachable host for 300 s by default; doctor answers in seconds.
SDK_RETRY_TIMEOUT = 10
USABLE_STATES = ("AVAILABLE", "UPDATING")
# The SDK appends its whole configuration to error messages; doctor says which one it used.
SDK_CONFIG_SUFFIX = re.compile(r"\s*Config: [^\n]*")


async def check_authentication(ctx: Context) -> CheckResult:
    settings, spec = _settings(ctx), ctx.spec
    if spec is None:
        return not_applicable(AUTHENTICATION, NOT_LAKEBASE.format(what="identity"))
    try:
        w = await asyncio.to_thread(
            workspace_client, settings, retry_timeout_seconds=SDK_RETRY_TIMEOUT
        )
    except ConfigurationError as error:  # the SDK is not installed
        return failed(AUTHENTICATION, str(error), "uv sync --extra databricks")
    except ValueError as error:
        cause = f"Databricks authentication is not configured: {_plain(error)}"
        return failed(AUTHENTICATION, _text(ctx, cause), _configure_fix(settings))
    ctx.workspace = w
    try:
        me = await asyncio.to_thread(w.current_user.me)
    except Exception as error:  # refused, unreachable, or timed out: all are this check's
        cause = (
            f"Databricks refused or did not answer `current_user.me` ({type(error).__name__}: "
            f"{first_line(error, _plain(error))}); configuration used: "
            f"{describe_config(w.config)}"
        )
        return failed(AUTHENTICATION, _text(ctx, cause), _auth_fix(w.config, error, settings))
    ctx.identity = me.user_name
    if not ctx.identity:
        return failed(
            AUTHENTICATION,
            _text(ctx, "the workspace returned no user name for this identity"),
            _configure_fix(settings),
        )
    if spec.user and spec.user != ctx.identity:
        cause = (
            f"the SDK authenticates as {ctx.identity}, but PGUSER is {spec.user}: the database "
            f"credential would be {ctx.identity}'s and the login as {spec.user} is refused"
        )
        return failed(AUTHENTICATION, _text(ctx, cause), _mismatch_fix(settings))
    return passed(AUTHENTICATION, f"{ctx.identity} ({describe_config(w.config)})")


async def check_instance(ctx: Context) -> CheckResult:
    settings, spec = _settings(ctx), ctx.spec
    if spec is None:
        return not_applicable(INSTANCE, NOT_LAKEBASE.format(what="instance"))
    connector = LakebaseConnector(spec, settings, workspace=ctx.workspace)
    ctx.connector = connector
    try:
        await asyncio.to_thread(connector.resolve)
    except DatabaseUnavailableError as error:
        fix = await asyncio.to_thread(_instance_fix, ctx, error)
        text = _plain(error)
        return failed(INSTANCE, text if "Failed to connect" in text else _text(ctx, text), fix)
    state = await asyncio.to_thread(_state, ctx)
    # Autoscaling endpoints may be idle (scaled to zero): a login wakes them up.
    if state and connector.endpoint is None and state not in USABLE_STATES:
        return failed(
            INSTANCE,
            _text(ctx, f"'{connector.name}' is {state}, not AVAILABLE"),
            f"Start '{connector.name}' in the Databricks UI (its page under Lakebase) and wait "
            "until it is AVAILABLE, then run `lakebase-memory doctor` again.",
        )
    what = "endpoint" if connector.endpoint else "instance"
    return passed(
        INSTANCE,
        f"{what} '{connector.name}' is {state or 'reachable'}: host {connector.host}, port "
        f"{spec.port}, database {spec.database}",
    )


async def check_credential(ctx: Context) -> CheckResult:
    connector = ctx.connector
    if ctx.spec is None or connector is None:
        return not_applicable(CREDENTIAL, NOT_LAKEBASE.format(what="credential"))
    try:
        await connector.password()
    except DatabaseUnavailableError as error:
        return failed(CREDENTIAL, _plain(error), _credential_fix(ctx, error.__cause__))
    expires = connector.token_expires() or 0.0
    now = time.time()
    if expires <= now:
        cause = (
            f"the database credential expired before it could be used (expiration "
            f"{_iso(expires)}, this machine's clock {_iso(now)}): every login with it is refused"
        )
        return failed(
            CREDENTIAL,
            _text(ctx, cause),
            "Synchronise this machine's clock with NTP (credentials are checked against the "
            "workspace's clock), then run `lakebase-memory doctor` again; on a local Lakebase, "
            "restart it with a longer `--token-ttl`.",
        )
    return passed(
        CREDENTIAL,
        f"minted a database credential for {connector.user} on '{connector.name}', valid for "
        f"{_duration(expires - now)} (until {_iso(expires)})",
    )


# --- texts --------------------------------------------------------------------------------------


def _text(ctx: Context, cause: str) -> str:
    """The reference text (local or deployed variant) followed by the cause."""
    return failure_text(ctx.lakebase_name, _settings(ctx), cause)


def _configure_fix(settings: Settings) -> str:
    if settings.on_databricks_app:
        return (
            "On a Databricks App the platform injects DATABRICKS_HOST, DATABRICKS_CLIENT_ID and "
            "DATABRICKS_CLIENT_SECRET: do not override them in app.yaml, then redeploy."
        )
    if settings.databricks_config_profile:
        profile = settings.databricks_config_profile
        return (
            f"Create or refresh the profile: `databricks auth login --host <workspace-url> "
            f"--profile {profile}` (profiles live in ~/.databrickscfg), or set "
            "DATABRICKS_CONFIG_PROFILE to an existing one."
        )
    return (
        "Set DATABRICKS_HOST and DATABRICKS_TOKEN, or DATABRICKS_CONFIG_PROFILE, in .env.local: "
        "`lakebase-memory configure --profile <profile> --instance <instance>` writes them "
        "(`databricks auth login --host <workspace-url>` creates a profile)."
    )


def _auth_fix(config: Config, error: Exception, settings: Settings) -> str:
    from databricks.sdk.errors import PermissionDenied, Unauthenticated

    host = config.host or "<workspace-url>"
    if not isinstance(error, PermissionDenied | Unauthenticated):
        return (
            f"Check that DATABRICKS_HOST ({host}) is the workspace URL "
            "(https://<workspace>.cloud.databricks.com) and that it is reachable from here "
            "(network, proxy), then run `lakebase-memory doctor` again."
        )
    if config.auth_type == "pat":
        return (
            f"The token in DATABRICKS_TOKEN is invalid, expired or revoked: create a new one for "
            f"{host} (User settings > Developer > Access tokens) and put it in DATABRICKS_TOKEN "
            f"in .env.local, or use a profile: `databricks auth login --host {host}` then "
            "`lakebase-memory configure --profile <profile> --instance <instance>`."
        )
    if config.auth_type == "oauth-m2m":
        if settings.on_databricks_app:
            return _configure_fix(settings)
        return (
            "DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET were refused: create a new OAuth "
            "secret for the service principal (Settings > Identity and access > Service "
            "principals > Secrets) and update DATABRICKS_CLIENT_SECRET."
        )
    profile = f" --profile {config.profile}" if config.profile else ""
    return f"Log in again: `databricks auth login --host {host}{profile}`."


def _mismatch_fix(settings: Settings) -> str:
    if settings.on_databricks_app:
        return (
            "Remove DATABRICKS_TOKEN and DATABRICKS_CONFIG_PROFILE from app.yaml so the app "
            "authenticates as its own service principal (the injected DATABRICKS_CLIENT_ID), "
            "then redeploy."
        )
    return "Unset PGUSER (the app logs in as its Databricks identity), or authenticate as PGUSER."


def _instance_fix(ctx: Context, error: BaseException) -> str:
    from databricks.sdk.errors import DatabricksError, NotFound

    settings, spec, cause = _settings(ctx), ctx.spec, error.__cause__
    text = str(error)
    assert spec is not None
    if isinstance(cause, NotFound) and spec.kind in (LakebaseKind.INSTANCE,
                                                     LakebaseKind.INSTANCE_HOST):  # fmt: skip
        names = _instance_names(ctx)
        known = f"; this workspace has: {', '.join(names)}" if names else ""
        return (
            f"Set LAKEBASE_INSTANCE_NAME to the instance's exact name{known} "
            "(`databricks database list-database-instances` lists them)."
        )
    if isinstance(cause, NotFound) or "read-write endpoint" in text:
        return (
            "Check LAKEBASE_AUTOSCALING_ENDPOINT (or _PROJECT and _BRANCH) against the project's "
            "branches and endpoints in the Databricks UI (Lakebase > your project)."
        )
    if isinstance(cause, DatabricksError):
        return _access_fix(ctx)
    if "has the host" in text:
        names = _instance_names(ctx)
        known = f" (this workspace has: {', '.join(names)})" if names else ""
        return f"Set LAKEBASE_INSTANCE_NAME to the instance's name{known}."
    if "AVAILABLE" in text:
        return (
            f"Start '{spec.value}' in the Databricks UI and wait until it is AVAILABLE, then run "
            "`lakebase-memory doctor` again."
        )
    return _configure_fix(settings)


def _credential_fix(ctx: Context, cause: BaseException | None) -> str:
    from databricks.sdk.errors import PermissionDenied

    if isinstance(cause, PermissionDenied):
        return _access_fix(ctx)
    return (
        "Run `lakebase-memory doctor` again; if it persists, check the instance's state in the "
        "Databricks UI."
    )


def _access_fix(ctx: Context) -> str:
    settings = _settings(ctx)
    if settings.on_databricks_app:
        return (
            f"Add '{ctx.lakebase_name}' to app '{settings.databricks_app_name}' as a database "
            "resource (Edit > App resources > Add resource > Database, Can connect and create): "
            "it gives the app's service principal access; then redeploy."
        )
    return (
        f"Ask an owner of '{ctx.lakebase_name}' to give {ctx.identity or 'your identity'} CAN USE "
        "on it (Databricks UI: the instance's Permissions), or authenticate as an identity that "
        "has it."
    )


def _instance_names(ctx: Context) -> list[str]:
    return [] if ctx.workspace is None else instance_names(ctx.workspace)


def _state(ctx: Context) -> str | None:
    connector, w = ctx.connector, ctx.workspace
    if connector is None or w is None:
        return None
    try:
        if connector.endpoint:
            status = getattr(w.postgres.get_endpoint(connector.endpoint), "status", None)
            return _enum_text(getattr(status, "current_state", None))
        if connector.instance_name:
            return _enum_text(w.database.get_database_instance(connector.instance_name).state)
    except Exception:  # the host is known already; the state is only reported
        return None
    return None


def _enum_text(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _settings(ctx: Context) -> Settings:
    assert ctx.settings is not None, "the configuration check runs first"
    return ctx.settings


def _plain(error: BaseException) -> str:
    return SDK_CONFIG_SUFFIX.sub("", str(error)).strip()


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
