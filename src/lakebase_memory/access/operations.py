"""Every client operation as a program: validation, statements, error mapping and logging,
written once and run by both clients.

A program is a generator. It yields each `Query` to run; the client's driver (sync or async:
`client.py`, `async_client.py`) runs it and sends back its rows (a list of dicts, or None
when it returns none), or throws the database error into the program, which maps it. Nothing
here does I/O, so the sync and async clients cannot drift apart.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from lakebase_memory.access import statements as st
from lakebase_memory.access.errors import AccessValueError, grant_error, role_error
from lakebase_memory.access.privileges import (
    AnyPrivilege,
    DatabasePrivilege,
    IdentityType,
    SchemaPrivilege,
    SequencePrivilege,
    TablePrivilege,
    coerce_identity_type,
    coerce_privileges,
    privileges_text,
)
from lakebase_memory.access.report import PrivilegeReport, build_report, grants_query, role_query
from lakebase_memory.errors import first_line

logger = logging.getLogger("lakebase_memory.access")

Params = Sequence[Any] | Mapping[str, Any] | None
Rows = list[dict[str, Any]] | None
T = TypeVar("T")


@dataclass(frozen=True)
class Query:
    statement: sql.Composable | str
    params: Params = None


Program = Generator[Query, Rows, T]


@dataclass(frozen=True)
class Done:
    """A program's result (see `advance`)."""

    value: Any


def start(program: Program[T]) -> Query | Done:
    """A program's first query (or, with none, `Done` with its result)."""
    try:
        return next(program)
    except StopIteration as done:
        return Done(done.value)


def advance(program: Program[T], outcome: Rows | psycopg.Error) -> Query | Done:
    """One step of a driver: send the last query's rows (or throw its error) into `program`;
    its next query, or `Done` with its result. Both clients' drivers are this loop around
    their own way of running a query."""
    try:
        if isinstance(outcome, psycopg.Error):
            return program.throw(outcome)
        return program.send(outcome)
    except StopIteration as done:
        return Done(done.value)


# The extension is missing from this server: "extension ... is not available" (0A000 since
# PostgreSQL 15, 58P01 "could not open extension control file" before).
EXTENSION_UNAVAILABLE = ("0A000", "58P01")
NUMERIC_ID = re.compile(r"\d+")


def execute(statement: sql.Composable | str, params: Params = None) -> Program[Rows]:
    return (yield Query(statement, params))


# --- roles -------------------------------------------------------------------------------------


def create_role(
    identity_name: str, identity_type: object, *, ensure_extension: bool = True
) -> Program[Rows]:
    """A role for a Databricks identity through databricks_auth; on a server without that
    extension (plain PostgreSQL), a plain role, with a warning saying so. A role that already
    exists is left alone (logged, not an error)."""
    st.check_name(identity_name, "identity_name")
    kind = coerce_identity_type(identity_type)
    if kind is IdentityType.SERVICE_PRINCIPAL and NUMERIC_ID.fullmatch(identity_name.strip()):
        raise AccessValueError(
            f"'{identity_name}' looks like a numeric service_principal_id. Lakebase names a "
            "service principal by its application (client) id, a UUID: for an app, "
            "`databricks apps get <app> -o json | jq -r .service_principal_client_id`."
        )
    if ensure_extension:
        try:
            yield Query(st.create_extension())
        except psycopg.Error as error:
            if error.sqlstate in EXTENSION_UNAVAILABLE:
                return (yield from _create_plain_role(identity_name, kind, error))
            mapped = role_error(error, identity_name, kind)
            if mapped is None:
                raise
            raise mapped from error
    try:
        return (yield Query(st.databricks_create_role(identity_name, kind)))
    except psycopg.errors.DuplicateObject:
        logger.info("Role '%s' already exists, skipping creation.", identity_name)
        return None
    except psycopg.Error as error:
        mapped = role_error(error, identity_name, kind)
        if mapped is None:
            raise
        raise mapped from error


def _create_plain_role(name: str, kind: IdentityType, cause: psycopg.Error) -> Program[Rows]:
    login = kind is not IdentityType.GROUP
    logger.warning(
        "The databricks_auth extension is not available on this server (%s), so this is "
        "plain PostgreSQL: creating '%s' as a %s role rather than a role bound to a Databricks "
        "identity.",
        first_line(cause),
        name,
        "LOGIN" if login else "NOLOGIN (group)",
    )
    try:
        yield Query(st.create_role(name, login=login))
    except psycopg.errors.DuplicateObject:
        logger.info("Role '%s' already exists, skipping creation.", name)
    except psycopg.Error as error:
        mapped = role_error(error, name, kind)
        if mapped is None:
            raise
        raise mapped from error
    return None


def role_exists(role: str) -> Program[bool]:
    st.check_name(role, "role")
    rows = yield Query(st.role_exists(role))
    return bool(rows and rows[0]["exists"])


def privileges_of(role: str) -> Program[PrivilegeReport]:
    st.check_name(role, "role")
    role_rows = yield Query(role_query(role))
    if not role_rows:
        return build_report(role, None, None)
    grant_rows = yield Query(grants_query(role))
    return build_report(role, role_rows, grant_rows)


# --- grants and revokes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """How one family of objects is named, parsed and described."""

    target: st.Target
    privilege: type[Any]
    param: str  # the argument's name: schemas, tables, sequences, databases


SCHEMAS = Kind(st.Target.SCHEMA, SchemaPrivilege, "schemas")
ALL_TABLES = Kind(st.Target.ALL_TABLES, TablePrivilege, "schemas")
TABLES = Kind(st.Target.TABLE, TablePrivilege, "tables")
ALL_SEQUENCES = Kind(st.Target.ALL_SEQUENCES, SequencePrivilege, "schemas")
SEQUENCES = Kind(st.Target.SEQUENCE, SequencePrivilege, "sequences")
DATABASES = Kind(st.Target.DATABASE, DatabasePrivilege, "databases")


def change_privileges(
    kind: Kind,
    grantee: str,
    privileges: Sequence[object],
    objects: Sequence[Any],
    *,
    revoke: bool = False,
) -> Program[None]:
    """GRANT (or REVOKE) `privileges` on each object, one statement per object, so that an
    error names the object it is about."""
    st.check_not_empty(objects, kind.param)
    st.check_not_empty(privileges, "privileges")
    chosen: list[AnyPrivilege] = coerce_privileges(kind.privilege, privileges)
    st.check_name(grantee, "grantee")
    names = [_object_name(kind, item) for item in objects]  # all checked before any runs
    verb = "revoke" if revoke else "grant"
    text = privileges_text(chosen)
    for label, identifier in names:
        operation = f"{verb} {text} on {kind.target.label} '{label}'"
        statement = st.grant(chosen, kind.target, identifier, grantee, revoke=revoke)
        yield from _run_grant(statement, operation, grantee)
        logger.info(
            "%s %s on %s '%s' %s '%s'",
            "Revoked" if revoke else "Granted",
            text,
            kind.target.label,
            label,
            "from" if revoke else "to",
            grantee,
        )


def change_database_privileges(
    grantee: str,
    privileges: Sequence[object],
    databases: Sequence[str] | None,
    *,
    revoke: bool = False,
) -> Program[None]:
    """Database privileges; `databases=None` means the database connected to."""
    if databases is None:
        st.check_not_empty(privileges, "privileges")
        st.check_name(grantee, "grantee")
        rows = yield Query(st.current_database())
        assert rows
        databases = [str(rows[0]["database"])]
    yield from change_privileges(DATABASES, grantee, privileges, databases, revoke=revoke)


def default_privileges(
    grantee: str,
    privileges: Sequence[object],
    *,
    owner: str,
    schemas: Sequence[str],
    objects: st.DefaultObjects | str | None = None,
    revoke: bool = False,
) -> Program[None]:
    """ALTER DEFAULT PRIVILEGES FOR ROLE `owner`, per schema: privileges `grantee` gets on the
    tables (or sequences) `owner` creates there later. Existing objects are not affected.

    `objects` defaults to SEQUENCES when every privilege is a SequencePrivilege, else TABLES.
    """
    st.check_not_empty(schemas, "schemas")
    st.check_not_empty(privileges, "privileges")
    if objects is None:
        every_sequence = all(isinstance(p, SequencePrivilege) for p in privileges)
        objects = st.DefaultObjects.SEQUENCES if every_sequence else st.DefaultObjects.TABLES
    try:
        what = st.DefaultObjects(objects.upper() if isinstance(objects, str) else objects)
    except ValueError:
        raise AccessValueError(f"objects must be TABLES or SEQUENCES, got {objects!r}.") from None
    chosen: list[AnyPrivilege] = []
    if what is st.DefaultObjects.SEQUENCES:
        chosen += coerce_privileges(SequencePrivilege, privileges)
    else:
        chosen += coerce_privileges(TablePrivilege, privileges)
    st.check_name(grantee, "grantee")
    st.check_name(owner, "owner")
    for schema in schemas:
        st.check_name(schema, "schema")
    text = privileges_text(chosen)
    verb = "revoke" if revoke else "grant"
    for schema in schemas:
        statement = st.alter_default_privileges(owner, schema, chosen, what, grantee, revoke=revoke)
        operation = (
            f"alter default privileges for role '{owner}' in schema '{schema}' to {verb} "
            f"{text} on {what.value.lower()}"
        )
        yield from _run_grant(statement, operation, grantee)
        logger.info("Altered default privileges: %s, for '%s'", operation, grantee)


def _object_name(kind: Kind, item: Any) -> tuple[str, sql.Identifier]:
    if kind.target in (st.Target.TABLE, st.Target.SEQUENCE):
        what = "table" if kind.target is st.Target.TABLE else "sequence"
        qualified = st.parse_qualified(item, what)
        label = item if isinstance(item, str) else str(qualified)
        return label, qualified.identifier
    singular = "database" if kind.target is st.Target.DATABASE else "schema"
    return item, sql.Identifier(st.check_name(item, singular))


def _run_grant(statement: sql.Composable, operation: str, grantee: str) -> Program[None]:
    try:
        yield Query(statement)
    except psycopg.Error as error:
        mapped = grant_error(error, operation, grantee)
        if mapped is None:
            raise
        raise mapped from error
