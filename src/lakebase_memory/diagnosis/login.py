"""Check 5: log in to the database as the app would, and say why a refused login was refused."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from datetime import UTC, datetime

import psycopg
from psycopg.conninfo import conninfo_to_dict

from lakebase_memory.database.lakebase import (
    create_role_sql,
    failure_text,
    identity_kind,
    sql_identifier,
)
from lakebase_memory.database.pool import CONNECTION_KWARGS
from lakebase_memory.database.targets import DatabaseTarget, TargetKind, open_target
from lakebase_memory.diagnosis.context import Context
from lakebase_memory.diagnosis.result import CheckResult, failed, passed
from lakebase_memory.errors import LakebaseMemoryError, first_line

LOGIN = "login"
WHERE = "DATABASE_URL (or the PG* variables)"


async def check_login(ctx: Context) -> CheckResult:
    try:
        target = await asyncio.to_thread(_target, ctx)
    except LakebaseMemoryError as error:
        return failed(LOGIN, str(error), "`lakebase-memory config` shows the settings in use.")
    ctx.target = target
    try:
        conninfo = await target.login_conninfo()
        conn = await psycopg.AsyncConnection.connect(conninfo, **CONNECTION_KWARGS)
    except psycopg.OperationalError as error:
        cause, fix = explain(ctx, target, error)
        if ctx.connector is not None:  # the reference text (local or deployed), then the cause
            cause = failure_text(ctx.lakebase_name, ctx.connector.settings, cause)
        return failed(LOGIN, cause, fix)
    except LakebaseMemoryError as error:  # e.g. a credential refused while minting
        return failed(LOGIN, str(error), "Run `lakebase-memory doctor` again.")
    ctx.conn = conn
    cursor = await conn.execute("SHOW server_version")
    row = await cursor.fetchone()
    version = str(row["server_version"]).split()[0] if row else "?"
    tls = "TLS" if conn.pgconn.ssl_in_use else "no TLS"
    return passed(
        LOGIN,
        f"logged in as {conn.info.user} to {target.kind.value} PostgreSQL {version} "
        f"({target.location}; {tls})",
    )


def _target(ctx: Context) -> DatabaseTarget:
    connector = ctx.connector
    if connector is None:
        assert ctx.settings is not None
        return open_target(ctx.settings)  # embedded (started here) or any PostgreSQL
    spec = connector.spec
    location = (
        f"Lakebase {spec.kind.value} '{connector.name}' at {connector.host}, "
        f"database {spec.database}, as {connector.user}"
    )
    return DatabaseTarget(TargetKind.LAKEBASE, connector.conninfo(), location, lakebase=connector)


def explain(
    ctx: Context, target: DatabaseTarget, error: psycopg.OperationalError
) -> tuple[str, str]:
    """The cause of a refused login, and the exact fix."""
    text = str(error).strip()
    first = first_line(error)
    params = conninfo_to_dict(target.conninfo)
    user = str(params.get("user") or "")
    lakebase = ctx.connector is not None
    if "role" in text and "does not exist" in text:
        return _no_role(ctx, user, lakebase)
    if "password authentication failed" in text:
        return _password_refused(ctx, target, user, first)
    if "database" in text and "does not exist" in text:
        if lakebase:
            return first, "Unset PGDATABASE, or set PGDATABASE=databricks_postgres."
        return first, f"Create the database as a superuser (CREATE DATABASE ...) or fix {WHERE}."
    if "SSL" in text or "encryption" in text:
        return _tls(first, text, lakebase)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return (
        f"cannot reach PostgreSQL at {host}:{port}: {first}",
        f"Check the host and port in {'PGPORT / the instance' if lakebase else WHERE}, that the "
        "server is running, and that no firewall blocks the port; `lakebase-memory config` "
        "shows the settings in use.",
    )


def _no_role(ctx: Context, user: str, lakebase: bool) -> tuple[str, str]:
    settings = ctx.settings
    if not lakebase:
        return (
            f'PostgreSQL role "{user}" does not exist',
            f"As a superuser: CREATE ROLE {sql_identifier(user)} LOGIN PASSWORD '<password>'; "
            "then, as the "
            f"tables' owner: `lakebase-memory grant {user}`.",
        )
    fix = (
        f"As the instance owner: `lakebase-memory grant {user} --type {identity_kind(user)}` "
        f"(creates the role and grants what the app needs), or in SQL: {create_role_sql(user)}"
    )
    if settings is not None and settings.on_databricks_app:
        fix = (
            f"Add the instance to app '{settings.databricks_app_name}' as a database resource "
            "(Can connect and create): it creates this role. Or " + fix[0].lower() + fix[1:]
        )
    return f'PostgreSQL role "{user}" does not exist on the instance', fix


def _password_refused(
    ctx: Context, target: DatabaseTarget, user: str, first: str
) -> tuple[str, str]:
    if ctx.connector is not None:
        minted_for = ctx.identity or user
        if minted_for != user:
            return (
                f"the database credential was minted for {minted_for} but the login is as {user}",
                "Authenticate to Databricks as the identity that logs in (or unset PGUSER).",
            )
        return (
            f"the database credential for {user} was refused ({first}): it expired before the "
            "login, or was minted by another workspace",
            "Synchronise this machine's clock with NTP and run `lakebase-memory doctor` again; "
            "check that DATABRICKS_HOST is the instance's workspace.",
        )
    expiry = _jwt_expiry(conninfo_to_dict(target.conninfo).get("password"))
    if expiry is not None:
        state = "expired" if expiry <= time.time() else "expires"
        moment = datetime.fromtimestamp(expiry, UTC).isoformat(timespec="seconds")
        return (
            f"the password for {user} is a fixed Lakebase database credential, which {state} at "
            f"{moment} (they last one hour): {first}",
            "Remove the password from DATABASE_URL / PGPASSWORD and set LAKEBASE_INSTANCE_NAME "
            "instead, so a fresh credential is minted for every login: `lakebase-memory "
            "configure --instance <instance>`.",
        )
    return first, f"Correct the password for {user} in {WHERE}."


def _tls(first: str, text: str, lakebase: bool) -> tuple[str, str]:
    if lakebase:
        return first, "Set PGSSLMODE=require (or unset it): Lakebase accepts only TLS connections."
    if "does not support SSL" in text:
        return first, f"This server has no TLS: use sslmode=prefer or disable in {WHERE}."
    return (
        f"the server requires TLS: {first}",
        "Add sslmode=require to DATABASE_URL (or set PGSSLMODE=require).",
    )


def _jwt_expiry(password: object) -> float | None:
    """The `exp` claim if the password is a JWT (as Lakebase credentials are), else None."""
    if not isinstance(password, str) or password.count(".") != 2:
        return None
    payload = password.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None
