"""Database errors mapped by SQLSTATE to the reference SDK's exceptions and texts.

The classes subclass the built-in exceptions the reference raises (PermissionError,
ValueError, RuntimeError), so `except PermissionError` code keeps working, and
LakebaseMemoryError, so the CLI catches them as one family. Each keeps the database error as
its `__cause__`, carries its `sqlstate`, and ends with "Original error: <e>".
"""

from __future__ import annotations

import psycopg

from lakebase_memory.access.privileges import IdentityType
from lakebase_memory.errors import LakebaseMemoryError

ROLES_DOCS = "https://docs.databricks.com/aws/en/oltp/instances/pg-roles?language=PostgreSQL"


class AccessError(LakebaseMemoryError):
    """A role or privilege operation failed; the message says why and what to do."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class AccessPermissionError(AccessError, PermissionError):
    """The connected role may not do this (42501, 0L000)."""


class AccessValueError(AccessError, ValueError):
    """An object or identity does not exist, or an argument is invalid."""


class AccessRuntimeError(AccessError, RuntimeError):
    """The server lacks something the operation needs (42883: no databricks_create_role)."""


def role_error(
    error: psycopg.Error, identity_name: str, identity_type: IdentityType
) -> AccessError | None:
    """What a failed `databricks_create_role` (or CREATE ROLE) means; None if unmapped.

    42710 (the role exists) is not an error for `create_role` and is handled by the caller.
    """
    state = error.sqlstate
    if state == "22023":
        kind = identity_type.value.lower().replace("_", " ")
        return AccessValueError(
            f"Identity '{identity_name}' not found in the Databricks workspace. Ensure the "
            f"{kind} exists in your Databricks workspace before creating a role, and that "
            f"identity_type ({identity_type.value}) is its type. Original error: {error}",
            state,
        )
    if state == "42501":
        return AccessPermissionError(
            f"Insufficient privileges to create role '{identity_name}'. Ensure you have "
            "'CAN MANAGE' permission on the Lakebase instance and a Postgres Role which can "
            "create other Postgres roles (a member of databricks_superuser on Lakebase, "
            f"CREATEROLE on PostgreSQL). Original error: {error}",
            state,
        )
    if state == "42883":
        return AccessRuntimeError(
            "The databricks_create_role function is not available. Ensure the databricks_auth "
            "extension is properly installed (CREATE EXTENSION IF NOT EXISTS databricks_auth, "
            f"or create_role(..., ensure_extension=True)). See {ROLES_DOCS}. "
            f"Original error: {error}",
            state,
        )
    return None


def grant_error(error: psycopg.Error, operation: str, grantee: str) -> AccessError | None:
    """What a failed GRANT, REVOKE or ALTER DEFAULT PRIVILEGES means; None if unmapped.

    `operation` reads like "grant USAGE, CREATE on schema 'public'".
    """
    state = error.sqlstate
    if state == "42501":
        return AccessPermissionError(
            f"Insufficient privileges to {operation}. Ensure you have 'CAN MANAGE' permission "
            "on the Lakebase instance and appropriate ownership or GRANT OPTION on the target "
            f"objects. Original error: {error}",
            state,
        )
    if state == "42704":
        return AccessValueError(
            f"Failed to {operation}: object does not exist. Ensure the schema/table/sequence "
            f"exists and the role '{grantee}' has been created. Original error: {error}",
            state,
        )
    if state == "3F000":
        return AccessValueError(
            f"Failed to {operation}: schema does not exist. Verify the schema name is correct. "
            f"Original error: {error}",
            state,
        )
    if state == "42P01":
        return AccessValueError(
            f"Failed to {operation}: table does not exist. Verify the table name is correct. "
            f"Original error: {error}",
            state,
        )
    if state == "0L000":
        return AccessPermissionError(
            f"Cannot {operation}: you must be the owner or have GRANT OPTION for these "
            f"privileges. Original error: {error}",
            state,
        )
    if state == "2BP01":
        return AccessPermissionError(
            f"Cannot {operation}: other roles hold privileges that '{grantee}' granted with "
            f"GRANT OPTION; revoke those first. Original error: {error}",
            state,
        )
    return None
