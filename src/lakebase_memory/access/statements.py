"""SQL for roles and privileges, built with psycopg.sql only: no I/O here.

Every name goes through `sql.Identifier` (always double-quoted, quotes doubled) and every value
through `sql.Literal`; privileges come from the enums (`privileges.py`). Names are checked
first: not blank, no NUL character, and at most 63 bytes, because PostgreSQL silently
truncates a longer identifier and the statement would then apply to another name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from psycopg import sql

from lakebase_memory.access.privileges import AnyPrivilege, IdentityType, privileges_text

EXTENSION = "databricks_auth"
MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1

EMPTY_TABLE = (
    "Table name cannot be empty. Provide a valid table name (e.g., 'users' or 'public.users')."
)
EMPTY_IDENTITY = (
    "identity_name cannot be empty. Provide a valid Databricks identity "
    "(user email, service principal UUID, or group ID)."
)
EMPTY_TEXTS = {
    "identity_name": EMPTY_IDENTITY,
    "table": EMPTY_TABLE,
    "grantee": "grantee cannot be empty. Provide the role to grant to (e.g., a service "
    "principal UUID or a user email).",
    "role": "role cannot be empty. Provide a role name (e.g., a service principal UUID or a "
    "user email).",
    "owner": "owner cannot be empty. Provide the role that creates the objects (usually you).",
    "schema": "Schema name cannot be empty. Provide a valid schema name (e.g., 'public').",
    "sequence": "Sequence name cannot be empty. Provide a valid sequence name "
    "(e.g., 'public.users_id_seq').",
    "database": "Database name cannot be empty. Provide a valid database name "
    "(e.g., 'databricks_postgres').",
}


def check_name(value: object, what: str) -> str:
    """`value` as an identifier, or a ValueError saying what is wrong with it."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}: {value!r}.")
    if not value.strip():
        raise ValueError(EMPTY_TEXTS.get(what, f"{what} cannot be empty."))
    if "\x00" in value:
        raise ValueError(f"{what} {value!r} contains a NUL character, which PostgreSQL forbids.")
    size = len(value.encode())
    if size > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"{what} {value!r} is {size} bytes long; PostgreSQL truncates names to "
            f"{MAX_IDENTIFIER_BYTES} bytes, so the statement would apply to another name. "
            "Use a shorter name."
        )
    return value


def check_not_empty(items: Sequence[object], param: str) -> None:
    """The reference's text for an empty list: "'schemas' cannot be empty. ..."."""
    if isinstance(items, str):
        raise ValueError(f"'{param}' must be a list of names, not a single string: [{items!r}].")
    if not items:
        raise ValueError(f"'{param}' cannot be empty. Provide at least one {param[:-1]}.")


@dataclass(frozen=True)
class QualifiedName:
    """`schema.name`, or a bare name resolved through the search_path (schema None)."""

    schema: str | None
    name: str

    @property
    def identifier(self) -> sql.Identifier:
        if self.schema is None:
            return sql.Identifier(self.name)
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return self.name if self.schema is None else f"{self.schema}.{self.name}"


def parse_qualified(value: str | tuple[str, str], what: str = "table") -> QualifiedName:
    """`'schema.table'`, `'table'`, or `('schema', 'table')` for names that contain dots.

    A string splits at its first dot and each part is stripped (as the reference does); a
    tuple is taken as it is, so any name can be given that way.
    """
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"A {what} given as a tuple must be (schema, name), got {value!r}.")
        return QualifiedName(check_name(value[0], "schema"), check_name(value[1], what))
    if not isinstance(value, str) or not value.strip():
        raise ValueError(EMPTY_TEXTS[what] if isinstance(value, str) else f"{what}: {value!r}")
    if "." not in value:
        return QualifiedName(None, check_name(value.strip(), what))
    schema, name = (part.strip() for part in value.split(".", 1))
    if not schema or not name:
        raise ValueError(
            f"Invalid {what} format '{value}'. Expected 'schema.{what}' "
            f"(e.g., 'public.users') or just '{what}_name'."
        )
    return QualifiedName(check_name(schema, "schema"), check_name(name, what))


def privilege_list(privileges: Sequence[AnyPrivilege]) -> sql.Composable:
    for privilege in privileges:
        _keyword(privilege)
    return sql.SQL(privileges_text(privileges))


def _keyword(privilege: Enum) -> str:
    # Only enum members reach here (see privileges.coerce_privileges); their values are
    # fixed SQL keywords, so splicing them is safe.
    keyword = str(privilege.value)
    assert keyword.replace("_", "").isalpha(), keyword
    return keyword


# --- what a privilege is on ------------------------------------------------------------------


class Target(Enum):
    """The kinds of object a GRANT or REVOKE names, with the reference's wording."""

    SCHEMA = ("SCHEMA", "schema")
    ALL_TABLES = ("ALL TABLES IN SCHEMA", "all tables in schema")
    TABLE = ("TABLE", "table")
    ALL_SEQUENCES = ("ALL SEQUENCES IN SCHEMA", "all sequences in schema")
    SEQUENCE = ("SEQUENCE", "sequence")
    DATABASE = ("DATABASE", "database")

    @property
    def keyword(self) -> sql.SQL:
        return sql.SQL(self.value[0])

    @property
    def label(self) -> str:
        return self.value[1]


def grant(
    privileges: Sequence[AnyPrivilege],
    target: Target,
    name: sql.Identifier,
    grantee: str,
    *,
    revoke: bool = False,
) -> sql.Composed:
    """`GRANT <privileges> ON <target> <name> TO <grantee>`, or the REVOKE ... FROM."""
    template = (
        "REVOKE {privs} ON {target} {name} FROM {grantee}"
        if revoke
        else ("GRANT {privs} ON {target} {name} TO {grantee}")
    )
    return sql.SQL(template).format(
        privs=privilege_list(privileges),
        target=target.keyword,
        name=name,
        grantee=sql.Identifier(grantee),
    )


class DefaultObjects(str, Enum):  # noqa: UP042 - like the privilege enums
    """What ALTER DEFAULT PRIVILEGES applies to."""

    TABLES = "TABLES"
    SEQUENCES = "SEQUENCES"


def alter_default_privileges(
    owner: str,
    schema: str,
    privileges: Sequence[AnyPrivilege],
    objects: DefaultObjects,
    grantee: str,
    *,
    revoke: bool = False,
) -> sql.Composed:
    """`ALTER DEFAULT PRIVILEGES FOR ROLE <owner> IN SCHEMA <schema> GRANT ... ON <objects> TO`:
    privileges on objects `owner` creates later in `schema` (never on existing ones)."""
    action = (
        "REVOKE {privs} ON {objects} FROM {grantee}"
        if revoke
        else ("GRANT {privs} ON {objects} TO {grantee}")
    )
    return sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} " + action).format(
        owner=sql.Identifier(owner),
        schema=sql.Identifier(schema),
        privs=privilege_list(privileges),
        objects=sql.SQL(objects.value),
        grantee=sql.Identifier(grantee),
    )


# --- roles -----------------------------------------------------------------------------------


def create_extension() -> sql.Composed:
    return sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(EXTENSION))


def databricks_create_role(identity_name: str, identity_type: IdentityType) -> sql.Composed:
    return sql.SQL("SELECT databricks_create_role({}, {})").format(
        sql.Literal(identity_name), sql.Literal(identity_type.value)
    )


def create_role(name: str, *, login: bool = True) -> sql.Composed:
    """A plain PostgreSQL role: LOGIN for a user or service principal, NOLOGIN for a group."""
    return sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(
        sql.Identifier(name)
    )


def role_exists(name: str) -> sql.Composed:
    return sql.SQL(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {}) AS exists"
    ).format(sql.Literal(name))


def current_database() -> sql.SQL:
    return sql.SQL("SELECT current_database() AS database")


def render(statement: sql.Composable) -> str:
    """The statement as text, for plans and scripts (no connection needed)."""
    return statement.as_string(None)
