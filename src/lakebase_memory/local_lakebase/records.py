"""The local workspace's records: identities, apps, the instance, endpoints and branches."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

STATE_VERSION = 1
DATABASE_NAME = "databricks_postgres"
APP_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,28}[a-z0-9]$")  # Databricks Apps' rule
BRANCH_ID_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")  # RFC 1123, as the API checks


class IdentityKind(StrEnum):
    USER = "USER"
    SERVICE_PRINCIPAL = "SERVICE_PRINCIPAL"


@dataclass
class Identity:
    """A workspace identity. `name` is what Lakebase calls it and logs it in as: the email of a
    user, the application (client) id UUID of a service principal."""

    kind: IdentityKind
    name: str
    display_name: str
    scim_id: str  # the numeric workspace id, as SCIM and `apps get` report it
    token: str  # a personal access token for the REST API
    client_secret: str | None = None  # service principals: OAuth machine-to-machine secret

    @property
    def is_service_principal(self) -> bool:
        return self.kind is IdentityKind.SERVICE_PRINCIPAL


@dataclass
class App:
    """A Databricks App record; it runs as its own service principal."""

    name: str
    id: str
    service_principal: str  # the application (client) id: the Postgres role name
    service_principal_name: str
    creator: str
    create_time: str
    database_resource: bool = False  # a Lakebase resource "Can connect and create" is attached


@dataclass
class Instance:
    """The provisioned database instance."""

    name: str
    uid: str
    creator: str
    creation_time: str


@dataclass
class AutoscalingEndpoint:
    """The autoscaling project/branch/endpoint; it serves the same database as the instance."""

    project: str
    branch: str
    endpoint: str
    project_uid: str
    branch_uid: str
    endpoint_uid: str
    create_time: str

    @property
    def project_name(self) -> str:
        return f"projects/{self.project}"

    @property
    def branch_name(self) -> str:
        return f"{self.project_name}/branches/{self.branch}"

    @property
    def name(self) -> str:
        return f"{self.branch_name}/endpoints/{self.endpoint}"


@dataclass
class Branch:
    """Another branch of the autoscaling project, branched from the default one, without
    compute: it has no endpoint, as a branch whose read-write compute was deleted (Lakebase
    gives every new branch one)."""

    branch: str
    uid: str
    create_time: str


def now_rfc3339() -> str:
    return rfc3339(datetime.now(UTC))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_pat() -> str:
    return "dapi" + secrets.token_hex(16)  # the shape of a Databricks personal access token


def new_scim_id() -> str:
    return str(10**15 + secrets.randbelow(9 * 10**15))  # 16 digits, like workspace SCIM ids
