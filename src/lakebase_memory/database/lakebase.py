"""Databricks Lakebase: log in as the caller's identity with a database credential minted on
demand and refreshed well before it expires (`LakebaseConnector`). Which instance the settings
name, and the texts of a failure, are in `lakebase_spec.py` (re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.conninfo import make_conninfo

from lakebase_memory.config import Settings
from lakebase_memory.config.databricks import describe_config, workspace_client
from lakebase_memory.errors import first_line

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
from lakebase_memory.database.lakebase_spec import (
    DATABASE,
    DEFAULT_PORT,
    LakebaseError,
    LakebaseKind,
    LakebaseSpec,
    configured_targets,
    failure_text,
    instance_names,
    lakebase_spec,
)

logger = logging.getLogger(__name__)

# A credential is replaced once this share of its lifetime has passed: an hour-long token is
# renewed after 30 minutes, so no login ever presents one close to expiry.
REFRESH_AFTER = 0.5
# Pooled connections are recycled before a credential's lifetime: Lakebase checks the token
# only at login, but a recycled connection must log in again with a fresh one.
LIFETIME_SHARE = 0.9

__all__ = [
    "DATABASE",
    "DEFAULT_PORT",
    "LIFETIME_SHARE",
    "REFRESH_AFTER",
    "Credential",
    "LakebaseConnector",
    "LakebaseError",
    "LakebaseKind",
    "LakebaseSpec",
    "configured_targets",
    "create_role_sql",
    "failure_text",
    "identity_kind",
    "instance_names",
    "is_uuid",
    "lakebase_spec",
    "sql_identifier",
    "sql_literal",
]


# --- the connector --------------------------------------------------------------------------


@dataclass
class Credential:
    token: str
    issued: float
    expires: float

    def fresh(self, now: float) -> bool:
        return now < self.issued + (self.expires - self.issued) * REFRESH_AFTER


class LakebaseConnector:
    """Resolves where and who to connect as, and supplies a valid password for each login."""

    def __init__(
        self, spec: LakebaseSpec, settings: Settings, workspace: WorkspaceClient | None = None
    ) -> None:
        self.spec = spec
        self.settings = settings
        self._workspace = workspace
        self.host: str | None = None
        self.state: str | None = None  # the instance's, once resolved (AVAILABLE, UPDATING)
        self.user: str | None = spec.user
        self.instance_name: str | None = spec.value if spec.kind is LakebaseKind.INSTANCE else None
        self.endpoint: str | None = spec.value if spec.kind is LakebaseKind.ENDPOINT else None
        self._credential: Credential | None = None
        self._lock = asyncio.Lock()
        self._blocking_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.instance_name or self.endpoint or self.spec.value

    def fail(self, cause: str) -> LakebaseError:
        return LakebaseError(failure_text(self.name, self.settings, cause))

    # --- resolving (at start-up, through the SDK) ------------------------------------------

    def workspace(self) -> WorkspaceClient:
        if self._workspace is None:
            try:
                self._workspace = workspace_client(self.settings)
            except ValueError as error:
                raise self.fail(
                    f"Databricks authentication is not configured: {error}. Set "
                    "DATABRICKS_HOST and DATABRICKS_TOKEN, or DATABRICKS_CONFIG_PROFILE, or run "
                    "`lakebase-memory configure`."
                ) from error
        return self._workspace

    def resolve(self) -> None:
        """Find the host and the identity (blocking SDK calls; run it in a thread)."""
        from databricks.sdk.errors import DatabricksError, NotFound

        w = self.workspace()
        try:
            if self.user is None:
                self.user = w.current_user.me().user_name
            if self.spec.kind is LakebaseKind.INSTANCE:
                self.host = self._instance_host(w.database.get_database_instance(self.spec.value))
            elif self.spec.kind is LakebaseKind.INSTANCE_HOST:
                self.host = self.spec.value
                self.instance_name = self._instance_named_by_host(w, self.spec.value)
            elif self.spec.kind is LakebaseKind.ENDPOINT:
                self.host = self._endpoint_host(w.postgres.get_endpoint(self.spec.value))
            else:
                self.endpoint, self.host = self._branch_endpoint(w, self.spec.value)
        except NotFound as error:
            raise self.fail(self._not_found(error)) from error
        except DatabricksError as error:
            raise self.fail(self._auth_problem(error)) from error
        if not self.user:
            raise self.fail("The Databricks identity has no user name to log in as.")

    def _instance_host(self, instance: Any) -> str:
        state = str(getattr(instance.state, "value", instance.state) or "")
        self.state = state or None
        if state and state not in ("AVAILABLE", "UPDATING"):
            raise self.fail(f"the instance is {state}, not AVAILABLE: start it and retry.")
        if not instance.read_write_dns:
            raise self.fail("the instance has no read-write host yet: wait until it is AVAILABLE.")
        return str(instance.read_write_dns)

    def _instance_named_by_host(self, w: WorkspaceClient, host: str) -> str:
        seen: list[str] = []
        for instance in w.database.list_database_instances():
            if host in (instance.read_write_dns, instance.read_only_dns):
                return str(instance.name)
            seen.append(f"{instance.name} (host {instance.read_write_dns or 'none yet'})")
        listed = (
            f"Instances in this workspace: {', '.join(seen)}."
            if seen
            else "This workspace has no Lakebase instance."
        )
        raise self.fail(
            f"no Lakebase instance in {w.config.host} has the host {host}. Set "
            "LAKEBASE_INSTANCE_NAME to the instance's name "
            f"(`databricks database list-database-instances`). {listed}"
        )

    def _endpoint_host(self, endpoint: Any) -> str:
        status = getattr(endpoint, "status", None)
        host = getattr(getattr(status, "hosts", None), "host", None)
        if not host:
            state = getattr(getattr(status, "current_state", None), "value", None) or "unknown"
            raise self.fail(
                f"endpoint {endpoint.name} has no host yet (state {state}): it is still being "
                "created or started. Wait until its state is ACTIVE "
                f"(`databricks postgres get-endpoint {endpoint.name}`) and retry."
            )
        return str(host)

    def _branch_endpoint(self, w: WorkspaceClient, branch: str) -> tuple[str, str]:
        for endpoint in w.postgres.list_endpoints(parent=branch):
            kind = getattr(getattr(endpoint, "status", None), "endpoint_type", None)
            if str(getattr(kind, "value", kind)) == "ENDPOINT_TYPE_READ_WRITE":
                return str(endpoint.name), self._endpoint_host(endpoint)
        raise self.fail(
            f"branch {branch} has no read-write endpoint, so there is nothing to connect to. "
            "Add a primary (read-write) compute to the branch in the Databricks UI (Lakebase > "
            "the project > the branch > Computes) or with `databricks postgres create-endpoint "
            f"{branch} <endpoint-id>` (endpoint_type ENDPOINT_TYPE_READ_WRITE), or set "
            "LAKEBASE_AUTOSCALING_ENDPOINT to the read-write endpoint of another branch."
        )

    def _not_found(self, error: Exception) -> str:
        what = {
            LakebaseKind.INSTANCE: f"no Lakebase instance named '{self.spec.value}'",
            LakebaseKind.ENDPOINT: f"no autoscaling endpoint '{self.spec.value}'",
            LakebaseKind.BRANCH: f"no autoscaling branch '{self.spec.value}'",
        }.get(self.spec.kind, "not found")
        host = self._workspace.config.host if self._workspace else "the workspace"
        listed = ""
        named = self.spec.kind is LakebaseKind.INSTANCE and self._workspace is not None
        if named and (names := instance_names(self._workspace)):  # type: ignore[arg-type]
            listed = f" Instances in this workspace: {', '.join(names)}."
        return f"{what} in {host} ({error}). Check the name: `{self._list_command()}`.{listed}"

    def _list_command(self) -> str:
        """The Databricks CLI command that lists what the configured name should be among."""
        parts = self.spec.value.split("/")
        if self.spec.kind is LakebaseKind.ENDPOINT:
            return f"databricks postgres list-endpoints {'/'.join(parts[:4])}"
        if self.spec.kind is LakebaseKind.BRANCH:
            return f"databricks postgres list-branches {'/'.join(parts[:2])}"
        return "databricks database list-database-instances"

    def _auth_problem(self, error: Exception) -> str:
        used = describe_config(self._workspace.config) if self._workspace else "unknown"
        return (
            f"Databricks refused the request ({type(error).__name__}: {error}); "
            f"configuration used: {used}."
        )

    # --- credentials (at every login) ----------------------------------------------------

    async def password(self) -> str:
        """A credential that stays valid well past this login; minted when needed."""
        async with self._lock:
            now = time.time()
            if self._credential is None or not self._credential.fresh(now):
                self._credential = await asyncio.to_thread(self._mint)
                logger.debug(
                    "minted a Lakebase credential valid until %s", self._credential.expires
                )
            return self._credential.token

    def password_blocking(self) -> str:
        """`password()` for synchronous callers (a sync connection pool); same cache."""
        with self._blocking_lock:
            if self._credential is None or not self._credential.fresh(time.time()):
                self._credential = self._mint()
            return self._credential.token

    def _mint(self) -> Credential:
        from databricks.sdk.errors import DatabricksError

        w = self.workspace()
        issued = time.time()
        try:
            if self.endpoint is not None:
                response = w.postgres.generate_database_credential(endpoint=self.endpoint)
                expires = _timestamp(response.expire_time)
            else:
                response = w.database.generate_database_credential(
                    request_id=str(uuid.uuid4()), instance_names=[self.name]
                )
                expires = _timestamp(response.expiration_time)
        except DatabricksError as error:
            raise self.fail(f"could not mint a database credential: {error}") from error
        if not response.token:
            host = w.config.host or "the workspace"
            raise self.fail(
                f"{host} answered the request for a database credential for '{self.name}' "
                "without a token, so there is no password to log in with. Retry; if it "
                "persists, check that DATABRICKS_HOST is the workspace's URL itself (not a "
                "proxy or gateway in front of it)."
            )
        return Credential(str(response.token), issued, expires or issued + 3600)

    def token_lifetime(self) -> float | None:
        if self._credential is None:
            return None
        return self._credential.expires - self._credential.issued

    def token_expires(self) -> float | None:
        """When the current credential expires (seconds since the epoch), if one was minted."""
        return None if self._credential is None else self._credential.expires

    def conninfo(self) -> str:
        """Where and who, without the password (the pool asks `password()` at each login)."""
        assert self.host is not None and self.user is not None, "resolve() first"
        return make_conninfo(
            host=self.host,
            port=self.spec.port,
            dbname=self.spec.database,
            user=self.user,
            sslmode=self.spec.sslmode,
            connect_timeout=self.settings.db_connect_timeout,
            application_name=self.settings.pgappname or "lakebase-memory",
        )

    def explain_login_failure(self, error: BaseException) -> str:
        text = str(error).strip()
        if "does not exist" in text and "role" in text:
            cause = (
                f'PostgreSQL role "{self.user}" does not exist on the instance. An instance '
                f"owner must create it: {create_role_sql(str(self.user))}"
            )
        elif "password authentication failed" in text:
            cause = (
                f"the database credential for '{self.user}' was refused (expired, or minted "
                f"for another identity): {text}"
            )
        else:
            cause = first_line(error)
        return failure_text(self.name, self.settings, cause)


def sql_literal(value: str | None) -> str:
    """A string as a SQL literal, for fixes a user will paste into a SQL editor."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_identifier(value: str | None) -> str:
    return '"' + str(value).replace('"', '""') + '"'


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "seconds"):  # protobuf Timestamp (autoscaling credentials)
        return float(value.seconds) + float(getattr(value, "nanos", 0)) / 1e9
    text = str(value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def is_uuid(value: str | None) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


def identity_kind(identity: str) -> str:
    """Service principals log in as their application id (a UUID), people as their email."""
    return "SERVICE_PRINCIPAL" if is_uuid(identity) else "USER"


def create_role_sql(identity: str) -> str:
    """The SQL an instance owner runs to give a Databricks identity its Postgres role."""
    return (
        "CREATE EXTENSION IF NOT EXISTS databricks_auth; "
        f"SELECT databricks_create_role({sql_literal(identity)}, '{identity_kind(identity)}');"
    )
