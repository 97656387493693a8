"""The REST control plane: the Databricks API calls `databricks-sdk` makes for Lakebase.

Errors use Databricks' JSON shape. Authentication errors copy what workspaces answer: no
credential is a 401 (`Unauthenticated` in the SDK); an unknown, expired or revoked token is a
403 "Invalid access token." (`PermissionDenied`), with the numeric `error_code` real workspaces
send. None of the errors sent here is one the SDK retries (it retries only unreachable hosts,
429/503 and a few message patterns), so a failing call fails at once.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lakebase_memory.local_lakebase import resources, serving
from lakebase_memory.local_lakebase.credentials import TokenStore
from lakebase_memory.local_lakebase.state import Identity, Workspace

ACCESS_TOKEN_TTL = 3600  # OAuth access tokens live an hour on Databricks
MIN_CREDENTIAL_TTL, MAX_CREDENTIAL_TTL = 300, 3600  # the Postgres API's bounds for `ttl`
Json = dict[str, Any]


@dataclass
class ControlPlaneContext:
    workspace: Workspace
    database_tokens: TokenStore  # database credentials (Postgres passwords)
    access_tokens: TokenStore  # OAuth M2M access tokens for the REST API
    host: str
    pg_host: str
    token_ttl: Callable[[], float]  # read at each mint: the owner may change it at runtime


class ApiError(Exception):
    """An error answer: `{"error_code": ..., "message": ...}` with an HTTP status."""

    def __init__(self, status: int, error_code: str | int, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message

    def body(self) -> Json:
        return {"error_code": self.error_code, "message": self.message}


class ScimError(ApiError):
    """SCIM endpoints answer in SCIM's own error shape."""

    def body(self) -> Json:
        status = str(self.status)
        return {"schemas": [resources.ERROR_SCHEMA], "detail": self.message, "status": status}


def not_found(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


async def caller(request: Request) -> Identity:
    """The identity behind the request's bearer token: a PAT or an OAuth access token."""
    context: ControlPlaneContext = request.app.state.context
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401, 401, "Credential was not sent or was of an unsupported type for this API."
        )
    identity = context.workspace.identity_by_token(token)
    if identity is None:
        name = context.access_tokens.identity_of(token)
        identity = context.workspace.identity(name) if name else None
    if identity is None:
        raise ApiError(403, 403, "Invalid access token.")
    return identity


Caller = Annotated[Identity, Depends(caller)]


def create_control_plane(context: ControlPlaneContext) -> FastAPI:
    app = FastAPI(title="local Lakebase control plane", openapi_url=None, docs_url=None)
    app.state.context = context
    workspace = context.workspace

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        auth_failure = error.status in (401, 403)
        headers = {"X-Databricks-Reason-Phrase": error.message} if auth_failure else None
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def no_such_api(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 405:
            body = {"error_code": "BAD_REQUEST", "message": f"{request.method} is not supported"}
        else:
            body = {
                "error_code": "ENDPOINT_NOT_FOUND",
                "message": f"No API found for '{request.method} {request.url.path}'",
            }
        return JSONResponse(body, status_code=error.status_code)

    @app.middleware("http")
    async def org_id_header(request: Request, call_next: Callable[..., Any]) -> Any:
        response = await call_next(request)
        response.headers["x-databricks-org-id"] = workspace.workspace_id
        return response

    def require_database_access(identity: Identity, resource: str) -> None:
        if not workspace.may_use_database(identity.name):
            raise ApiError(
                403,
                "PERMISSION_DENIED",
                f"{identity.name} does not have CAN USE permission on {resource}. Ask its "
                "owner to grant it (LocalLakebase.grant_can_use).",
            )

    # --- discovery and OAuth --------------------------------------------------------------

    @app.get("/.well-known/databricks-config")
    async def host_metadata() -> Json:
        # What a workspace publishes; the SDK reads it at every Config() (a 404 only warns).
        return {"oidc_endpoint": f"{context.host}/oidc", "workspace_id": workspace.workspace_id}

    @app.get("/oidc/.well-known/oauth-authorization-server")
    async def oidc_discovery() -> Json:
        base = f"{context.host}/oidc"
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/v1/authorize",
            "token_endpoint": f"{base}/v1/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["all-apis"],
        }

    @app.post("/oidc/v1/token")
    async def oauth_token(request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        client_id, client_secret = _basic_credentials(request) or (
            form.get("client_id", ""),
            form.get("client_secret", ""),
        )
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "Use client_credentials.")
        principal = workspace.identity(client_id)
        secret = principal.client_secret if principal else None
        if secret is None or not secrets.compare_digest(secret, client_secret):
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        issued = context.access_tokens.issue(client_id, ACCESS_TOKEN_TTL, context.host)
        return JSONResponse(
            {
                "access_token": issued.token,
                "token_type": "Bearer",
                "expires_in": ACCESS_TOKEN_TTL,
                "scope": form.get("scope", "all-apis"),
            }
        )

    # --- identities (SCIM) ----------------------------------------------------------------

    @app.get("/api/2.0/preview/scim/v2/Me")
    async def current_user(identity: Caller) -> Json:
        return resources.me(identity, admin=identity.name == workspace.owner)

    @app.get("/api/2.0/preview/scim/v2/ServicePrincipals")
    async def list_service_principals(
        identity: Caller,
        filter: str | None = None,
        start_index: Annotated[int, Query(alias="startIndex", ge=1)] = 1,
        count: Annotated[int, Query(ge=0)] = 10_000,
    ) -> Json:
        matching = [
            resources.service_principal(i)
            for i in workspace.all_identities()
            if i.is_service_principal and _matches(filter, i)
        ]
        # SCIM pages by 1-based startIndex; the SDK asks until a page comes back empty.
        page = matching[start_index - 1 : start_index - 1 + count]
        return {
            "schemas": [resources.LIST_SCHEMA],
            "totalResults": len(matching),
            "startIndex": start_index,
            "itemsPerPage": len(page),
            "Resources": page,
        }

    @app.post("/api/2.0/preview/scim/v2/ServicePrincipals")
    async def create_service_principal(identity: Caller, request: Request) -> Json:
        if identity.name != workspace.owner:
            raise ScimError(403, 403, "Only workspace admins can create service principals.")
        body = await _json(request)
        display_name = str(body.get("displayName") or "").strip()
        if not display_name:
            raise ScimError(400, 400, "displayName is required.")
        application_id = body.get("applicationId")
        if application_id is not None and not _is_uuid(application_id):
            raise ScimError(400, 400, f"applicationId {application_id!r} is not a UUID.")
        try:
            created = workspace.add_service_principal(display_name, application_id)
        except ValueError as error:  # that application id is taken
            raise ScimError(409, 409, str(error)) from None
        return resources.service_principal(created)

    @app.get("/api/2.0/preview/scim/v2/ServicePrincipals/{scim_id}")
    async def get_service_principal(identity: Caller, scim_id: str) -> Json:
        found = workspace.identity_by_scim_id(scim_id)
        if found is None or not found.is_service_principal:
            raise ScimError(404, 404, f"Service principal with id {scim_id} not found.")
        return resources.service_principal(found)

    # --- provisioned instances ------------------------------------------------------------

    @app.get("/api/2.0/database/instances")
    async def list_instances(identity: Caller) -> Json:
        return {"database_instances": [resources.instance(workspace.instance, context.pg_host)]}

    @app.get("/api/2.0/database/instances/{name}")
    async def get_instance(identity: Caller, name: str) -> Json:
        if name != workspace.instance.name:
            raise not_found(f"Database instance '{name}' does not exist.")
        return resources.instance(workspace.instance, context.pg_host)

    @app.post("/api/2.0/database/credentials")
    async def instance_credential(identity: Caller, request: Request) -> Json:
        body = await _json(request)
        names = body.get("instance_names") or []
        if not isinstance(names, list) or not names:
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                "At least one of instance_names or claims must be specified.",
            )
        for name in names:
            if name != workspace.instance.name:
                raise not_found(f"Database instance '{name}' does not exist.")
        require_database_access(identity, f"database instance '{workspace.instance.name}'")
        issued = context.database_tokens.issue(
            identity.name, context.token_ttl(), workspace.instance.uid
        )
        token = "" if workspace.empty_credentials else issued.token
        return resources.instance_credential(token, issued.expiration_time)

    # --- autoscaling projects -------------------------------------------------------------

    @app.post("/api/2.0/postgres/credentials")
    async def endpoint_credential(identity: Caller, request: Request) -> Json:
        body = await _json(request)
        name = body.get("endpoint")
        if not name:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Field 'endpoint' is required.")
        if name != workspace.endpoint.name:
            raise not_found(f"Endpoint '{name}' does not exist.")
        ttl = context.token_ttl()
        if "ttl" in body:
            ttl = _requested_ttl(body["ttl"])
        require_database_access(identity, f"endpoint '{name}'")
        issued = context.database_tokens.issue(identity.name, ttl, workspace.endpoint.endpoint_uid)
        token = "" if workspace.empty_credentials else issued.token
        return resources.endpoint_credential(token, issued.expiration_time)

    @app.get("/api/2.0/postgres/{path:path}")
    async def get_postgres_resource(identity: Caller, path: str) -> Json:
        item = workspace.endpoint
        if path == item.project_name:
            return resources.project(item, workspace.owner)
        if path == item.branch_name:
            return resources.branch(item)
        the_endpoint = resources.endpoint(
            item, context.pg_host, initializing=workspace.endpoint_initializing
        )
        if path == item.name:
            return the_endpoint
        others = workspace.all_branches()
        if path == f"{item.project_name}/branches":
            listed = [resources.branch(item)]
            listed += [resources.other_branch(item, other) for other in others]
            return {"branches": listed}
        if path == f"{item.branch_name}/endpoints":
            return {"endpoints": [the_endpoint]}
        for other in others:
            name = f"{item.project_name}/branches/{other.branch}"
            if path == name:
                return resources.other_branch(item, other)
            if path == f"{name}/endpoints":
                return {}  # no compute; the API's JSON leaves an empty list out
        if path == "projects":
            return {"projects": [resources.project(item, workspace.owner)]}
        raise not_found(f"Resource '{path}' does not exist.")

    # --- model serving (embedding endpoints, `serving.py`) ---------------------------------

    @app.post("/serving-endpoints/{name}/invocations")
    async def invoke_endpoint(identity: Caller, name: str, request: Request) -> Json:
        try:
            return serving.invoke(name, await _json(request))
        except serving.ServingError as error:
            raise ApiError(error.status, error.error_code, error.message) from None

    # --- apps -----------------------------------------------------------------------------

    def app_body(name: str) -> Json:
        record = workspace.app(name)
        if record is None:
            raise not_found(f"App with name {name} does not exist or is deleted.")
        principal = workspace.require(record.service_principal)
        return resources.app(record, principal, workspace.instance.name)

    @app.get("/api/2.0/apps")
    async def list_apps(identity: Caller) -> Json:
        return {"apps": [app_body(item.name) for item in workspace.all_apps()]}

    @app.get("/api/2.0/apps/{name}")
    async def get_app(identity: Caller, name: str) -> Json:
        return app_body(name)

    return app


async def _json(request: Request) -> Json:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "MALFORMED_REQUEST", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "MALFORMED_REQUEST", "The request body must be a JSON object.")
    return body


def _requested_ttl(value: object) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(value))
    seconds = float(match.group(1)) if match else -1.0
    if not MIN_CREDENTIAL_TTL <= seconds <= MAX_CREDENTIAL_TTL:
        raise ApiError(
            400,
            "INVALID_PARAMETER_VALUE",
            f"ttl must be between {MIN_CREDENTIAL_TTL}s and {MAX_CREDENTIAL_TTL}s, got {value!r}.",
        )
    return seconds


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return client_id, client_secret


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _matches(scim_filter: str | None, identity: Identity) -> bool:
    """The one SCIM filter form worth supporting here: `attribute eq "value"`."""
    if not scim_filter:
        return True
    match = re.fullmatch(r'\s*(\w+)\s+eq\s+"([^"]*)"\s*', scim_filter)
    if match is None:
        return True
    attribute, value = match.groups()
    actual = {
        "applicationId": identity.name,
        "displayName": identity.display_name,
        "id": identity.scim_id,
    }
    return actual.get(attribute) == value
