"""JSON bodies in the shapes the Databricks REST API returns and `databricks-sdk` parses."""

from __future__ import annotations

from typing import Any

from lakebase_memory.local_lakebase.state import (
    DATABASE_NAME,
    App,
    AutoscalingEndpoint,
    Branch,
    Identity,
    Instance,
)

Json = dict[str, Any]

USER_SCHEMAS = [
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:extension:workspace:2.0:User",
]
SERVICE_PRINCIPAL_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
ADMINS_GROUP_ID = "1000000000000001"
PG_VERSION = "PG_VERSION_18"  # what the server really is; real instances report 16 or 17


def me(identity: Identity, *, admin: bool) -> Json:
    """`GET /Me`: a User document, for service principals too (userName = application id)."""
    body: Json = {
        "schemas": USER_SCHEMAS,
        "id": identity.scim_id,
        "userName": identity.name,
        "displayName": identity.display_name,
        "active": True,
        "groups": [],
    }
    if not identity.is_service_principal:
        body["emails"] = [{"value": identity.name, "type": "work", "primary": True}]
    if admin:
        body["groups"] = [
            {"display": "admins", "value": ADMINS_GROUP_ID, "$ref": f"Groups/{ADMINS_GROUP_ID}"}
        ]
    return body


def service_principal(identity: Identity) -> Json:
    return {
        "schemas": [SERVICE_PRINCIPAL_SCHEMA],
        "id": identity.scim_id,
        "applicationId": identity.name,
        "displayName": identity.display_name,
        "active": True,
        "groups": [],
    }


def instance(item: Instance, pg_host: str) -> Json:
    return {
        "name": item.name,
        "uid": item.uid,
        "creator": item.creator,
        "creation_time": item.creation_time,
        "state": "AVAILABLE",
        "pg_version": PG_VERSION,
        "read_write_dns": pg_host,
        "read_only_dns": pg_host,  # the same server: it does not refuse writes
        "capacity": "CU_1",
        "effective_capacity": "CU_1",
        "node_count": 1,
        "effective_node_count": 1,
        "enable_readable_secondaries": False,
        "effective_enable_readable_secondaries": False,
        "retention_window_in_days": 7,
        "effective_retention_window_in_days": 7,
        "effective_stopped": False,
        "enable_pg_native_login": False,
        "effective_enable_pg_native_login": False,
    }


def project(item: AutoscalingEndpoint, owner: str) -> Json:
    return {
        "name": item.project_name,
        "project_id": item.project,
        "uid": item.project_uid,
        "create_time": item.create_time,
        "status": {
            "project_id": item.project,
            "display_name": item.project,
            "owner": owner,
            "pg_version": 18,
            "default_branch": item.branch_name,
        },
    }


def branch(item: AutoscalingEndpoint) -> Json:
    """The default branch: the one with the endpoint."""
    return {
        "name": item.branch_name,
        "branch_id": item.branch,
        "parent": item.project_name,
        "uid": item.branch_uid,
        "create_time": item.create_time,
        "status": {
            "branch_id": item.branch,
            "current_state": "READY",
            "default": True,
            "is_protected": False,
        },
    }


def other_branch(item: AutoscalingEndpoint, other: Branch) -> Json:
    """A branch made from the default one, without compute."""
    return {
        "name": f"{item.project_name}/branches/{other.branch}",
        "branch_id": other.branch,
        "parent": item.project_name,
        "uid": other.uid,
        "create_time": other.create_time,
        "status": {
            "branch_id": other.branch,
            "current_state": "READY",
            "default": False,
            "is_protected": False,
            "source_branch": item.branch_name,
        },
    }


def endpoint(item: AutoscalingEndpoint, pg_host: str, *, initializing: bool = False) -> Json:
    """The branch's read-write endpoint; while it is created (INIT) the API gives no host."""
    limits = {"autoscaling_limit_min_cu": 0.5, "autoscaling_limit_max_cu": 2.0}
    hosts = {} if initializing else {"hosts": {"host": pg_host}}
    return {
        "name": item.name,
        "endpoint_id": item.endpoint,
        "parent": item.branch_name,
        "uid": item.endpoint_uid,
        "create_time": item.create_time,
        "update_time": item.create_time,
        "spec": {"endpoint_type": "ENDPOINT_TYPE_READ_WRITE", **limits},
        "status": {
            "endpoint_id": item.endpoint,
            "endpoint_type": "ENDPOINT_TYPE_READ_WRITE",
            "current_state": "INIT" if initializing else "ACTIVE",
            **hosts,
            **limits,
        },
    }


def instance_credential(token: str, expiration_time: str) -> Json:
    """`POST /database/credentials`. An empty token is left out, as the API's JSON leaves out
    every empty field (see `Workspace.empty_credentials`)."""
    return _without_empty({"token": token, "expiration_time": expiration_time})


def endpoint_credential(token: str, expire_time: str) -> Json:
    """`POST /postgres/credentials`: the same, with the autoscaling API's field name."""
    return _without_empty({"token": token, "expire_time": expire_time})


def _without_empty(body: Json) -> Json:
    return {key: value for key, value in body.items() if value}


def app(item: App, principal: Identity, instance_name: str) -> Json:
    body: Json = {
        "name": item.name,
        "id": item.id,
        "description": "",
        "creator": item.creator,
        "create_time": item.create_time,
        "update_time": item.create_time,
        "updater": item.creator,
        "compute_size": "MEDIUM",
        "app_status": {"state": "RUNNING", "message": "App is running."},
        "compute_status": {"state": "ACTIVE", "message": "App compute is running."},
        # The UUID to grant to is service_principal_client_id; service_principal_id is the
        # numeric SCIM id (the field the seed's setup guide wrongly tells you to use).
        "service_principal_client_id": principal.name,
        "service_principal_id": int(principal.scim_id),
        "service_principal_name": item.service_principal_name,
    }
    if item.database_resource:
        body["resources"] = [
            {
                "name": "database",
                "database": {
                    "instance_name": instance_name,
                    "database_name": DATABASE_NAME,
                    "permission": "CAN_CONNECT_AND_CREATE",
                },
            }
        ]
    return body
