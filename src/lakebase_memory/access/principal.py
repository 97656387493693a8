"""Who `lakebase-memory grant PRINCIPAL` is about: a role name and its identity type.

PRINCIPAL may be a service principal's application (client) id (a UUID), a user's email, a
group name (with `--type GROUP`), a plain PostgreSQL role name, or the name of a Databricks
App, which is resolved through the SDK to the app's `service_principal_client_id`: the
identity the app logs in as. The seed's guide reads `service_principal_id` instead, the
numeric SCIM id, which names no Postgres role; given such a number, it is looked up and
replaced by the client id, and the output says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from lakebase_memory.access.app_plan import Principal
from lakebase_memory.access.privileges import IdentityType
from lakebase_memory.database.lakebase import is_uuid
from lakebase_memory.errors import LakebaseMemoryError

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

APP_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


class PrincipalError(LakebaseMemoryError):
    """PRINCIPAL names no identity we can grant to; the message says what to give instead."""


def resolve_principal(
    value: str,
    identity_type: IdentityType | None,
    workspace: Callable[[], WorkspaceClient] | None,
) -> Principal:
    """The role to grant to. `workspace` (a Databricks SDK client factory) is None when no
    workspace is configured (plain PostgreSQL): then names are taken as they are."""
    name = value.strip()
    if not name:
        raise PrincipalError(
            "PRINCIPAL cannot be empty: give an app name, a client id UUID, "
            "an email or a role name."
        )
    wanted = identity_type
    if name.isdigit() and wanted in (None, IdentityType.SERVICE_PRINCIPAL):
        return _from_scim_id(name, workspace)
    if is_uuid(name):
        return Principal(name, wanted or IdentityType.SERVICE_PRINCIPAL, "as given")
    if "@" in name:
        return Principal(name, wanted or IdentityType.USER, "as given")
    if wanted is IdentityType.GROUP:
        return Principal(name, wanted, "as given")
    if workspace is not None and APP_NAME.fullmatch(name):
        app = _app(name, workspace)
        if app is not None:
            return app
    if workspace is None or wanted is IdentityType.USER:
        return Principal(name, wanted or IdentityType.USER, "as given")
    raise PrincipalError(
        f"'{name}' is neither a service principal's client id (a UUID), an email, nor an app "
        f"in the workspace. For a group, add --type GROUP; for an app, check its name with "
        "`databricks apps list`."
    )


def _app(name: str, workspace: Callable[[], WorkspaceClient]) -> Principal | None:
    from databricks.sdk.errors import DatabricksError, NotFound

    try:
        app = workspace().apps.get(name)
    except NotFound:
        return None
    except DatabricksError as error:
        raise PrincipalError(f"Looking up app '{name}' failed: {error}") from error
    client_id = app.service_principal_client_id
    if not client_id:
        raise PrincipalError(f"App '{name}' has no service principal yet: deploy it first.")
    numeric = (
        f"; not service_principal_id {app.service_principal_id}, its numeric SCIM id"
        if app.service_principal_id
        else ""
    )
    return Principal(
        str(client_id),
        IdentityType.SERVICE_PRINCIPAL,
        f"service_principal_client_id of app '{name}'{numeric}",
    )


def _from_scim_id(number: str, workspace: Callable[[], WorkspaceClient] | None) -> Principal:
    hint = (
        f"'{number}' looks like a numeric service_principal_id (the SCIM id). Lakebase names a "
        "service principal by its application (client) id, a UUID: for an app, "
        "`databricks apps get <app> -o json | jq -r .service_principal_client_id`, or give "
        "the app's name."
    )
    if workspace is None:
        raise PrincipalError(hint)
    from databricks.sdk.errors import DatabricksError

    try:
        found = workspace().service_principals.get(number)
    except DatabricksError as error:
        raise PrincipalError(f"{hint} ({error})") from error
    if not found.application_id:
        raise PrincipalError(hint)
    return Principal(
        str(found.application_id),
        IdentityType.SERVICE_PRINCIPAL,
        f"application (client) id of service principal {number}: you gave its numeric "
        "service_principal_id, which names no Postgres role",
    )
