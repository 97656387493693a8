"""The checks in order, each run only when the checks it depends on passed."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg

from lakebase_memory.config import Settings
from lakebase_memory.database.lakebase import sql_identifier
from lakebase_memory.diagnosis.configuration import (
    APP_RESOURCE,
    CONFIGURATION,
    check_app_resource,
    check_configuration,
)
from lakebase_memory.diagnosis.context import Context
from lakebase_memory.diagnosis.login import LOGIN, check_login
from lakebase_memory.diagnosis.result import CheckResult, Status, failed, skipped
from lakebase_memory.diagnosis.tables import PRIVILEGES, SCHEMA, check_privileges, check_schema
from lakebase_memory.diagnosis.workspace import (
    AUTHENTICATION,
    CREDENTIAL,
    INSTANCE,
    check_authentication,
    check_credential,
    check_instance,
)

logger = logging.getLogger(__name__)

CheckFunction = Callable[[Context], Awaitable[CheckResult]]
# PostgreSQL's text (in English) for a refused table or view: the one to give back.
REFUSED_TABLE = re.compile(r"permission denied for (?:table|view) (\S+)")


@dataclass(frozen=True)
class Check:
    name: str
    run: CheckFunction
    needs: tuple[str, ...] = ()  # checks that must have passed (or not applied)


CHECKS: tuple[Check, ...] = (
    Check(CONFIGURATION, check_configuration),
    Check(AUTHENTICATION, check_authentication, (CONFIGURATION,)),
    Check(INSTANCE, check_instance, (AUTHENTICATION,)),
    Check(CREDENTIAL, check_credential, (INSTANCE,)),
    Check(LOGIN, check_login, (CONFIGURATION, CREDENTIAL)),
    Check(SCHEMA, check_schema, (LOGIN,)),
    Check(PRIVILEGES, check_privileges, (LOGIN,)),
    # Needs only the settings: an app without its resource fails here whatever else failed.
    Check(APP_RESOURCE, check_app_resource),
)
_BY_NAME = {check.name: check for check in CHECKS}


async def diagnose(load_settings: Callable[[], Settings]) -> list[CheckResult]:
    """Run every check in order and return one result per check (never raises for a fault)."""
    ctx = Context(load_settings)
    try:
        for check in CHECKS:
            ctx.results[check.name] = await _run(check, ctx)
    finally:
        await ctx.aclose()
    return list(ctx.results.values())


async def _run(check: Check, ctx: Context) -> CheckResult:
    blocked = [name for name in check.needs if not ctx.results[name].ok]
    if blocked:
        roots = dict.fromkeys(_root_failure(name, ctx) for name in blocked)
        return skipped(check.name, f"skipped: the {' and '.join(roots)} check failed")
    try:
        return await check.run(ctx)
    except Exception as error:  # a bug or an unforeseen fault: still a diagnosis, not a crash
        logger.debug("check %s raised", check.name, exc_info=True)
        detail = f"the check itself failed: {type(error).__name__}: {error}"
        return failed(check.name, detail, _unexpected_fix(ctx, error))


def _unexpected_fix(ctx: Context, error: Exception) -> str:
    """What to do when a check raised: the database's refusals are not doctor's bugs."""
    if isinstance(error, psycopg.errors.InsufficientPrivilege) and ctx.conn is not None:
        # The checks read the catalog and call the privilege functions, which every role
        # may do unless a DBA revoked it.
        role = ctx.conn.info.user
        match = REFUSED_TABLE.search(str(error))
        restore = (
            f"run `GRANT SELECT ON {match[1]} TO {sql_identifier(role)}`"
            if match
            else "give back what the error names (a catalog table's SELECT, a function's EXECUTE)"
        )
        return (
            f"Role {role} was refused a query this check makes, which every role may run unless "
            f"a DBA revoked it: as a superuser, {restore}, then run `lakebase-memory doctor` "
            "again."
        )
    return (
        "Run `lakebase-memory doctor` again; if it persists, report it with the output of "
        "`lakebase-memory doctor --json`."
    )


def _root_failure(name: str, ctx: Context) -> str:
    """The failed check behind a skipped one: the first failure up its chain of needs."""
    if ctx.results[name].status is Status.FAIL:
        return name
    for need in _BY_NAME[name].needs:
        if not ctx.results[need].ok:
            return _root_failure(need, ctx)
    return name
