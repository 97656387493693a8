"""Privilege and identity-type enums, with the reference SDK's names and values.

`ALL` anywhere in a list renders `ALL PRIVILEGES`. Privileges are SQL keywords, so they are
never taken from free text: every value is checked against its enum before it reaches SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Literal, TypeVar


class TablePrivilege(str, Enum):  # noqa: UP042 - the reference's `str, Enum`, not StrEnum
    """PostgreSQL table privileges for GRANT statements."""

    SELECT = "SELECT"
    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    TRUNCATE = "TRUNCATE"
    REFERENCES = "REFERENCES"
    TRIGGER = "TRIGGER"
    ALL = "ALL"  # renders as ALL PRIVILEGES


class SchemaPrivilege(str, Enum):  # noqa: UP042 - the reference's `str, Enum`, not StrEnum
    """PostgreSQL schema privileges for GRANT statements."""

    USAGE = "USAGE"
    CREATE = "CREATE"
    ALL = "ALL"


class SequencePrivilege(str, Enum):  # noqa: UP042 - the reference's `str, Enum`, not StrEnum
    """PostgreSQL sequence privileges for GRANT statements."""

    USAGE = "USAGE"
    SELECT = "SELECT"
    UPDATE = "UPDATE"
    ALL = "ALL"


class DatabasePrivilege(str, Enum):  # noqa: UP042 - the reference's `str, Enum`, not StrEnum
    """PostgreSQL database privileges for GRANT statements (not in the reference SDK)."""

    CONNECT = "CONNECT"
    CREATE = "CREATE"
    TEMPORARY = "TEMPORARY"
    ALL = "ALL"


class IdentityType(str, Enum):  # noqa: UP042 - the reference's `str, Enum`, not StrEnum
    """The kinds of Databricks identity `databricks_create_role` accepts."""

    USER = "USER"
    SERVICE_PRINCIPAL = "SERVICE_PRINCIPAL"
    GROUP = "GROUP"


IdentityTypeName = Literal["USER", "SERVICE_PRINCIPAL", "GROUP"]
AnyPrivilege = TablePrivilege | SchemaPrivilege | SequencePrivilege | DatabasePrivilege
P = TypeVar("P", TablePrivilege, SchemaPrivilege, SequencePrivilege, DatabasePrivilege)


def coerce_privileges(
    kind: type[P], privileges: Iterable[object], param: str = "privileges"
) -> list[P]:
    """Each item as a member of `kind` (members, or their exact values as strings).

    Anything else is a ValueError naming the valid values: a privilege is spliced into SQL as
    a keyword, so free text must never get through.
    """
    result: list[P] = []
    for item in privileges:
        value = item.value if isinstance(item, Enum) else item
        try:
            result.append(kind(value))
        except ValueError:
            valid = ", ".join(member.value for member in kind)
            raise ValueError(
                f"{item!r} in '{param}' is not a {_kind_label(kind)} privilege. "
                f"Use {kind.__name__} members: {valid}."
            ) from None
    return list(dict.fromkeys(result))  # keep the order, drop repeats


def privileges_text(privileges: Sequence[AnyPrivilege]) -> str:
    """`SELECT, INSERT` or `ALL PRIVILEGES` (as in error messages and logs)."""
    values = [p.value for p in privileges]
    return "ALL PRIVILEGES" if "ALL" in values else ", ".join(values)


def coerce_identity_type(identity_type: object) -> IdentityType:
    value = identity_type.value if isinstance(identity_type, Enum) else identity_type
    if isinstance(value, str):
        try:
            return IdentityType(value.strip().upper())
        except ValueError:
            pass
    raise ValueError(
        f"identity_type must be one of 'USER', 'SERVICE_PRINCIPAL' or 'GROUP' (got "
        f"{identity_type!r}): a user's email is a USER, an application (client) id UUID a "
        "SERVICE_PRINCIPAL, a workspace group name a GROUP."
    )


def _kind_label(kind: type[Enum]) -> str:
    return kind.__name__.removesuffix("Privilege").lower()
