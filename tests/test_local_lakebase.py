"""The local Lakebase, driven by the real databricks-sdk and real psycopg (no mocks)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
from databricks.sdk.errors import NotFound, PermissionDenied, Unauthenticated
from psycopg import errors, sql

from conftest import ROOT, make_scratch_dir
from lakebase_fixtures import (
    anonymous_workspace_client,
    oauth_workspace_client,
    workspace_client,
)
from lakebase_memory.local_lakebase import IdentityKind, LocalLakebase


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def mint(lakebase: LocalLakebase, who: object = None) -> str:
    """A database credential through the provisioned-instance API, as the identity."""
    w = workspace_client(lakebase, who)  # type: ignore[arg-type]
    credential = w.database.generate_database_credential(
        request_id=str(uuid.uuid4()), instance_names=[lakebase.instance_name]
    )
    assert credential.token
    return credential.token


def connect(lakebase: LocalLakebase, user: str, password: str) -> psycopg.Connection:
    return psycopg.connect(lakebase.conninfo(user, password), autocommit=True)


def owner_connection(lakebase: LocalLakebase) -> psycopg.Connection:
    conn = connect(lakebase, lakebase.owner, mint(lakebase))
    conn.execute("CREATE EXTENSION IF NOT EXISTS databricks_auth")
    return conn


def login_error(lakebase: LocalLakebase, user: str, password: str) -> dict[str, str]:
    """The ErrorResponse fields (C = SQLSTATE, M = message) the server answers a login with.
    libpq keeps only the text of a login failure, so this speaks the protocol itself."""
    with socket.create_connection((lakebase.pg_host, lakebase.pg_port), timeout=10) as raw:
        raw.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
        assert raw.recv(1) == b"S"
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with context.wrap_socket(raw) as tls:
            body = b"".join(f"{k}\0{v}\0".encode() for k, v in {"user": user}.items()) + b"\0"
            tls.sendall(struct.pack("!ii", len(body) + 8, 196608) + body)
            kind, payload = _read_message(tls)
            assert (kind, payload) == (b"R", struct.pack("!i", 3)), "cleartext password asked"
            secret = password.encode() + b"\0"
            tls.sendall(b"p" + struct.pack("!i", len(secret) + 4) + secret)
            kind, payload = _read_message(tls)
            while kind in (b"R", b"S", b"K"):  # a trusting server says AuthenticationOk first
                kind, payload = _read_message(tls)
    assert kind == b"E", f"expected an ErrorResponse, got {kind!r}"
    return {f[:1].decode(): f[1:].decode() for f in payload.split(b"\0") if f}


def _read_message(tls: ssl.SSLSocket) -> tuple[bytes, bytes]:
    head = _read_exactly(tls, 5)
    (length,) = struct.unpack("!i", head[1:])
    return head[:1], _read_exactly(tls, length - 4)


def _read_exactly(tls: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = tls.recv(size - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


# --- REST: identities ---------------------------------------------------------------------


def test_owner_is_the_pat_caller_and_host_metadata_is_served(local_lakebase, sdk_for, caplog):
    caplog.set_level(logging.WARNING, logger="databricks.sdk")
    w = sdk_for()
    me = w.current_user.me()
    assert me.user_name == "owner@example.com" and me.active
    assert me.id and me.id.isdigit() and me.display_name == "owner"
    assert [g.display for g in me.groups or []] == ["admins"]
    # The host metadata is a valid document: the SDK takes the workspace id from it, silently.
    assert w.get_workspace_id() == int(local_lakebase.workspace.workspace_id)
    assert not [r for r in caplog.records if "host metadata" in r.getMessage()]


def test_service_principal_me_is_its_application_id(local_lakebase, sdk_for):
    principal = local_lakebase.add_service_principal(unique("robot"))
    assert principal.kind is IdentityKind.SERVICE_PRINCIPAL
    uuid.UUID(principal.name)
    me = sdk_for(principal).current_user.me()
    assert me.user_name == principal.name
    assert me.display_name == principal.display_name and me.id == principal.scim_id
    assert not me.emails and not me.groups


def test_user_me_is_the_email(local_lakebase, sdk_for):
    user = local_lakebase.add_user(f"{unique('ada')}@example.com")
    assert user.kind is IdentityKind.USER
    me = sdk_for(user).current_user.me()
    assert me.user_name == user.name and me.emails and me.emails[0].value == user.name


def test_service_principal_oauth_m2m(local_lakebase):
    principal = local_lakebase.add_service_principal(unique("m2m"))
    w = oauth_workspace_client(local_lakebase, principal)
    assert w.config.auth_type == "oauth-m2m"
    assert w.current_user.me().user_name == principal.name
    wrong = principal.__class__(**{**principal.__dict__, "client_secret": "dose-wrong"})
    with pytest.raises(Exception, match="invalid_client"):
        oauth_workspace_client(local_lakebase, wrong).current_user.me()


def test_service_principals_scim_api(local_lakebase, sdk_for):
    w = sdk_for()
    created = w.service_principals.create(display_name=unique("scim"))
    assert created.application_id and created.id and created.active
    assert w.service_principals.get(created.id).application_id == created.application_id
    found = list(w.service_principals.list(filter=f'applicationId eq "{created.application_id}"'))
    assert [p.display_name for p in found] == [created.display_name]
    # The new principal is a workspace identity: it has a token and can call the API.
    assert local_lakebase.identity(created.application_id).kind is IdentityKind.SERVICE_PRINCIPAL
    with pytest.raises(NotFound):
        w.service_principals.get("1")
    someone = local_lakebase.add_service_principal(unique("not-admin"))
    with pytest.raises(PermissionDenied):
        sdk_for(someone).service_principals.create(display_name="nope")


# --- REST: instances, endpoints, credentials --------------------------------------------------


def test_database_instance_get_and_list(local_lakebase, sdk_for):
    w = sdk_for()
    instance = w.database.get_database_instance(local_lakebase.instance_name)
    assert instance.name == local_lakebase.instance_name
    assert instance.state is not None and instance.state.value == "AVAILABLE"
    assert instance.read_write_dns == local_lakebase.pg_host == "127.0.0.1"
    assert instance.uid and instance.creator == local_lakebase.owner
    assert instance.pg_version == "PG_VERSION_18"
    listed = list(w.database.list_database_instances())
    assert [i.uid for i in listed] == [instance.uid]


def test_provisioned_credential(local_lakebase, sdk_for):
    before = time.time()
    credential = sdk_for().database.generate_database_credential(
        request_id=str(uuid.uuid4()), instance_names=[local_lakebase.instance_name]
    )
    assert credential.token and credential.token.count(".") == 2  # JWT-shaped
    assert credential.expiration_time is not None
    expires = datetime.fromisoformat(credential.expiration_time.replace("Z", "+00:00"))
    assert expires.tzinfo is UTC or expires.utcoffset() is not None
    assert abs(expires.timestamp() - (before + local_lakebase.token_ttl)) < 5


def test_autoscaling_project_branch_endpoint_and_credential(local_lakebase, sdk_for):
    w = sdk_for()
    name = local_lakebase.endpoint_name
    assert name == "projects/local-project/branches/main/endpoints/primary"
    endpoint = w.postgres.get_endpoint(name)
    assert endpoint.status and endpoint.status.hosts
    assert endpoint.status.hosts.host == local_lakebase.pg_host
    assert endpoint.status.endpoint_type is not None
    assert endpoint.status.endpoint_type.value == "ENDPOINT_TYPE_READ_WRITE"
    listed = list(w.postgres.list_endpoints(parent="projects/local-project/branches/main"))
    assert [e.name for e in listed] == [name]
    assert w.postgres.get_project("projects/local-project").status.owner == local_lakebase.owner
    assert w.postgres.get_branch("projects/local-project/branches/main").status.default
    credential = w.postgres.generate_database_credential(endpoint=name)
    assert credential.token and credential.expire_time is not None
    assert credential.expire_time.seconds > time.time() + local_lakebase.token_ttl - 5
    # The endpoint's credential logs in to the same database.
    with connect(local_lakebase, local_lakebase.owner, credential.token) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("databricks_postgres",)


def test_unknown_names_are_not_found_at_once(local_lakebase, sdk_for):
    w = sdk_for()
    started = time.monotonic()
    calls = [
        lambda: w.database.get_database_instance("no-such-instance"),
        lambda: w.database.generate_database_credential(
            request_id=str(uuid.uuid4()), instance_names=["no-such-instance"]
        ),
        lambda: w.postgres.get_endpoint("projects/local-project/branches/main/endpoints/nope"),
        lambda: w.postgres.list_endpoints(parent="projects/nope/branches/main").__next__(),
        lambda: w.postgres.generate_database_credential(
            endpoint="projects/local-project/branches/main/endpoints/nope"
        ),
        lambda: w.apps.get("no-such-app"),
    ]
    for call in calls:
        with pytest.raises(NotFound) as caught:
            call()
        assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert time.monotonic() - started < 5, "not retried"


def test_a_branch_without_compute_has_no_endpoints(local_lakebase, sdk_for):
    w = sdk_for()
    name = local_lakebase.add_branch(unique("dev"))
    assert local_lakebase.add_branch(name.rsplit("/", 1)[1]) == name  # idempotent
    branch = w.postgres.get_branch(name)
    assert branch.status and branch.status.default is False
    assert branch.status.source_branch == "projects/local-project/branches/main"
    assert name in [b.name for b in w.postgres.list_branches(parent="projects/local-project")]
    assert list(w.postgres.list_endpoints(parent=name)) == []
    with pytest.raises(ValueError, match="default branch"):
        local_lakebase.add_branch(local_lakebase.branch)
    with pytest.raises(ValueError, match="not valid"):
        local_lakebase.add_branch("Not_A_Branch")


def test_empty_credentials_come_back_without_a_token(local_lakebase, sdk_for, empty_credentials):
    w = sdk_for()
    instance = w.database.generate_database_credential(
        request_id=str(uuid.uuid4()), instance_names=[local_lakebase.instance_name]
    )
    assert instance.token is None and instance.expiration_time  # the field is left out
    endpoint = w.postgres.generate_database_credential(endpoint=local_lakebase.endpoint_name)
    assert endpoint.token is None and endpoint.expire_time is not None


def test_missing_credential_is_unauthenticated(local_lakebase):
    with pytest.raises(Unauthenticated, match="Credential was not sent"):
        anonymous_workspace_client(local_lakebase).current_user.me()
    answer = httpx.get(f"{local_lakebase.host}/api/2.0/database/instances")
    assert answer.status_code == 401 and "message" in answer.json()


def test_unknown_token_is_refused_like_a_workspace(local_lakebase, sdk_for):
    # Workspaces answer an unknown or revoked PAT with 403 "Invalid access token.".
    started = time.monotonic()
    with pytest.raises(PermissionDenied, match="Invalid access token"):
        sdk_for("dapi" + "0" * 32).current_user.me()
    with pytest.raises(PermissionDenied, match="Invalid access token"):
        sdk_for("dapi" + "0" * 32).database.generate_database_credential(
            request_id=str(uuid.uuid4()), instance_names=[local_lakebase.instance_name]
        )
    assert time.monotonic() - started < 5, "not retried"


def test_rotated_token_is_refused(local_lakebase, sdk_for):
    principal = local_lakebase.add_service_principal(unique("rotated"))
    old_token = principal.token
    rotated = local_lakebase.rotate_token(principal.name)
    assert rotated.token != old_token
    with pytest.raises(PermissionDenied, match="Invalid access token"):
        sdk_for(old_token).current_user.me()
    assert sdk_for(rotated).current_user.me().user_name == principal.name


def test_credentials_need_can_use(local_lakebase, sdk_for):
    principal = local_lakebase.add_service_principal(unique("no-rights"))
    w = sdk_for(principal)
    request = {"request_id": str(uuid.uuid4()), "instance_names": [local_lakebase.instance_name]}
    with pytest.raises(PermissionDenied) as caught:
        w.database.generate_database_credential(**request)
    assert caught.value.error_code == "PERMISSION_DENIED" and "CAN USE" in str(caught.value)
    with pytest.raises(PermissionDenied):
        w.postgres.generate_database_credential(endpoint=local_lakebase.endpoint_name)
    local_lakebase.grant_can_use(principal.name)
    assert w.database.generate_database_credential(**request).token
    assert w.postgres.generate_database_credential(endpoint=local_lakebase.endpoint_name).token
    local_lakebase.revoke_can_use(principal.name)
    with pytest.raises(PermissionDenied):
        w.database.generate_database_credential(**request)


def test_app_reports_client_id_and_numeric_service_principal_id(local_lakebase, sdk_for):
    name = unique("app")
    principal = local_lakebase.add_app(name)
    app = sdk_for().apps.get(name)
    assert app.name == name and app.id
    assert app.app_status and app.app_status.state and app.app_status.state.value == "RUNNING"
    assert app.compute_status and app.compute_status.state
    assert app.service_principal_client_id == principal.name  # the UUID to grant to
    assert app.service_principal_id == int(principal.scim_id)  # the seed's wrong field
    assert str(app.service_principal_id) != app.service_principal_client_id
    assert app.service_principal_name == principal.display_name
    assert not app.resources
    assert "PGHOST" not in local_lakebase.app_env(name)
    local_lakebase.attach_app_resource(name)
    (resource,) = sdk_for().apps.get(name).resources or []
    assert resource.database and resource.database.instance_name == local_lakebase.instance_name
    assert resource.database.permission.value == "CAN_CONNECT_AND_CREATE"
    assert name in [a.name for a in sdk_for().apps.list()]


# --- PostgreSQL: login --------------------------------------------------------------------


def test_credential_logs_in_over_tls(local_lakebase):
    with connect(local_lakebase, local_lakebase.owner, mint(local_lakebase)) as conn:
        assert conn.pgconn.ssl_in_use
        row = conn.execute("SELECT current_user, session_user, current_database()").fetchone()
        assert row == (local_lakebase.owner, local_lakebase.owner, "databricks_postgres")
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("18")


def test_plain_connections_are_refused(local_lakebase):
    conninfo = local_lakebase.conninfo(local_lakebase.owner, mint(local_lakebase))
    with pytest.raises(psycopg.OperationalError, match="accepts only SSL connections"):
        psycopg.connect(conninfo + " sslmode=disable")


def test_expired_credential_fails_new_logins_but_not_open_connections(
    local_lakebase, short_token_ttl
):
    short_token_ttl(1)
    token = mint(local_lakebase)
    with connect(local_lakebase, local_lakebase.owner, token) as open_conn:
        time.sleep(1.3)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(local_lakebase, local_lakebase.owner, token)
        error = login_error(local_lakebase, local_lakebase.owner, token)
        assert error["C"] == "28P01" and error["S"] == "FATAL"
        assert error["M"] == f'password authentication failed for user "{local_lakebase.owner}"'
        assert open_conn.execute("SELECT 1").fetchone() == (1,)


def test_token_of_one_identity_does_not_log_in_another(local_lakebase):
    principal = local_lakebase.add_service_principal(unique("borrower"))
    local_lakebase.grant_can_use(principal.name)
    token = mint(local_lakebase, principal)
    error = login_error(local_lakebase, local_lakebase.owner, token)
    assert error["C"] == "28P01"
    assert error["M"] == f'password authentication failed for user "{local_lakebase.owner}"'
    assert login_error(local_lakebase, "postgres", token)["C"] == "28P01"  # not the superuser


def test_valid_token_without_role_says_role_does_not_exist(local_lakebase):
    principal = local_lakebase.add_service_principal(unique("roleless"))
    local_lakebase.grant_can_use(principal.name)
    token = mint(local_lakebase, principal)
    with pytest.raises(psycopg.OperationalError, match=f'role "{principal.name}" does not exist'):
        connect(local_lakebase, principal.name, token)
    error = login_error(local_lakebase, principal.name, token)
    assert error["C"] == "28000"  # the server's own answer, relayed unchanged


def test_cancel_request_reaches_the_server(local_lakebase):
    with connect(local_lakebase, local_lakebase.owner, mint(local_lakebase)) as conn:
        timer = threading.Timer(0.3, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(10)")
        assert time.monotonic() - started < 5


# --- PostgreSQL: roles and privileges -----------------------------------------------------


def test_owner_role_is_like_an_instance_creator(local_lakebase):
    with psycopg.connect(local_lakebase.admin_conninfo(), autocommit=True) as admin:
        row = admin.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin, "
            "pg_has_role(rolname, 'databricks_superuser', 'USAGE') FROM pg_roles "
            "WHERE rolname = %s",
            (local_lakebase.owner,),
        ).fetchone()
        assert row == (False, True, True, True, True, True)
        owners = admin.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'databricks_postgres'"
        ).fetchone()
        assert owners == (local_lakebase.owner,)
        schema_owner = admin.execute(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'"
        ).fetchone()
        assert schema_owner == ("pg_database_owner",)  # i.e. the database owner
    with owner_connection(local_lakebase) as conn:
        table = unique("owned").replace("-", "_")
        conn.execute(sql.SQL("CREATE TABLE public.{} (id int)").format(sql.Identifier(table)))
        conn.execute(sql.SQL("DROP TABLE public.{}").format(sql.Identifier(table)))


def test_databricks_create_role_makes_a_login_role(local_lakebase):
    principal = local_lakebase.add_service_principal(unique("new-role"))
    local_lakebase.grant_can_use(principal.name)
    with owner_connection(local_lakebase) as conn:
        conn.execute("SELECT databricks_create_role(%s, 'SERVICE_PRINCIPAL')", (principal.name,))
        row = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
            "WHERE rolname = %s",
            (principal.name,),
        ).fetchone()
        assert row == (True, False, False, False)
        # Like a role the owner made itself: it may grant it on or drop it (ADMIN OPTION).
        admin_option = conn.execute(
            "SELECT m.admin_option, m.inherit_option FROM pg_auth_members m "
            "JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member "
            "WHERE r.rolname = %s AND u.rolname = current_user",
            (principal.name,),
        ).fetchone()
        assert admin_option == (True, False)
    with connect(local_lakebase, principal.name, mint(local_lakebase, principal)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (principal.name,)
        # PostgreSQL 15+: nobody but the owner may create in public.
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.not_mine (id int)")


def test_databricks_create_role_for_a_user(local_lakebase):
    user = local_lakebase.add_user(f"{unique('grace')}@example.com")
    local_lakebase.grant_can_use(user.name)
    with owner_connection(local_lakebase) as conn:
        conn.execute("SELECT databricks_create_role(%s, 'USER')", (user.name,))
    with connect(local_lakebase, user.name, mint(local_lakebase, user)) as conn:
        assert conn.execute("SELECT session_user").fetchone() == (user.name,)


def test_databricks_create_role_errors_have_lakebase_sqlstates(local_lakebase):
    principal = local_lakebase.add_service_principal(unique("errors"))
    user = local_lakebase.add_user(f"{unique('lin')}@example.com")
    with owner_connection(local_lakebase) as conn:
        create = "SELECT databricks_create_role(%s, %s)"
        with pytest.raises(errors.InvalidParameterValue, match="not found"):  # 22023
            conn.execute(create, (str(uuid.uuid4()), "SERVICE_PRINCIPAL"))
        with pytest.raises(errors.InvalidParameterValue, match="is a user, not a service"):
            conn.execute(create, (user.name, "SERVICE_PRINCIPAL"))
        with pytest.raises(errors.InvalidParameterValue, match="invalid identity type"):
            conn.execute(create, (principal.name, "ROBOT"))
        conn.execute(create, (principal.name, "SERVICE_PRINCIPAL"))
        with pytest.raises(errors.DuplicateObject, match="already exists"):  # 42710
            conn.execute(create, (principal.name, "SERVICE_PRINCIPAL"))
        with pytest.raises(errors.DuplicateObject):
            conn.execute(create, (local_lakebase.owner, "USER"))
    # A role that is not a member of databricks_superuser may not create roles.
    local_lakebase.grant_can_use(principal.name)
    with connect(local_lakebase, principal.name, mint(local_lakebase, principal)) as conn:
        with pytest.raises(errors.InsufficientPrivilege):  # 42501
            conn.execute("SELECT databricks_create_role(%s, 'USER')", (user.name,))
        with pytest.raises(errors.UndefinedFunction):  # 42883: not in this database
            conn.execute("SELECT nope_create_role('x', 'USER')")


def test_app_database_resource_creates_role_with_connect_and_create(local_lakebase):
    name = unique("deployed")
    principal = local_lakebase.add_app(name)
    # Deployed without the resource: the principal may mint, but has no role.
    token = mint(local_lakebase, principal)
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        connect(local_lakebase, principal.name, token)
    local_lakebase.attach_app_resource(name)
    local_lakebase.attach_app_resource(name)  # idempotent
    env = local_lakebase.app_env(name)
    assert env["PGUSER"] == env["DATABRICKS_CLIENT_ID"] == principal.name
    assert env["PGPORT"] == str(local_lakebase.pg_port) and env["PGSSLMODE"] == "require"
    with connect(local_lakebase, principal.name, token) as conn:
        schema = unique("app").replace("-", "_")
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))  # CREATE
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.app_table (id int)")
    # As the app itself does it: OAuth M2M with its client id and secret.
    w = oauth_workspace_client(local_lakebase, principal)
    assert w.current_user.me().user_name == principal.name


# --- persistence and the command line ------------------------------------------------------


def test_state_persists_across_restart():
    path = make_scratch_dir()
    try:
        with LocalLakebase(path / "ll") as first:
            principal = first.add_service_principal("keeper")
            first.add_app("kept-app")
            branch = first.add_branch("kept-branch")
            first.grant_can_use(principal.name)
            with owner_connection(first) as conn:
                conn.execute(
                    "SELECT databricks_create_role(%s, 'SERVICE_PRINCIPAL')", (principal.name,)
                )
            before = (first.host, first.pg_port, first.owner_token, first.workspace.instance.uid)
        with LocalLakebase(path / "ll") as second:
            assert (second.host, second.pg_port) == before[:2]  # last run's ports, if free
            assert (second.owner_token, second.workspace.instance.uid) == before[2:]
            assert second.add_service_principal("keeper") == principal  # same identity
            assert workspace_client(second, principal).current_user.me().user_name == principal.name
            assert workspace_client(second).apps.get("kept-app").service_principal_client_id
            assert workspace_client(second).postgres.get_branch(branch).name == branch
            with connect(second, principal.name, mint(second, principal)) as conn:  # role kept
                assert conn.execute("SELECT current_user").fetchone() == (principal.name,)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_cli_prints_env_lines_and_stops_on_ctrl_c():
    path = make_scratch_dir()
    command = [
        sys.executable, "-m", "lakebase_memory.cli.main", "local-lakebase",
        "--data-dir", str(path / "cli"), "--token-ttl", "600",
        "--service-principal", "cli-robot", "--app", "cli-app",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any(line.startswith("# data in") for line in lines):
            assert time.monotonic() < deadline, lines
            line = process.stdout.readline()  # type: ignore[union-attr]
            assert line, f"exited early: {process.wait()} {process.stderr.read()}"  # type: ignore[union-attr]
            lines.append(line.rstrip("\n"))
        env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
        assert set(env) == {
            "DATABRICKS_HOST", "DATABRICKS_TOKEN", "LAKEBASE_INSTANCE_NAME", "PGPORT", "PGSSLMODE",
        }  # fmt: skip
        assert env["LAKEBASE_INSTANCE_NAME"] == "local-lakebase"
        assert env["PGSSLMODE"] == "require" and env["DATABRICKS_HOST"].startswith("http://")
        assert any("'cli-robot': application id" in line for line in lines)
        assert any("app 'cli-app' environment:" in line and "PGUSER=" in line for line in lines)
        # The printed lines are enough for the SDK and libpq.
        from databricks.sdk import WorkspaceClient

        w = WorkspaceClient(
            host=env["DATABRICKS_HOST"], token=env["DATABRICKS_TOKEN"], auth_type="pat"
        )
        credential = w.database.generate_database_credential(
            request_id=str(uuid.uuid4()), instance_names=[env["LAKEBASE_INSTANCE_NAME"]]
        )
        instance = w.database.get_database_instance(env["LAKEBASE_INSTANCE_NAME"])
        conninfo = psycopg.conninfo.make_conninfo(
            host=instance.read_write_dns, port=env["PGPORT"], dbname="databricks_postgres",
            user=w.current_user.me().user_name, password=credential.token,
            sslmode=env["PGSSLMODE"],
        )  # fmt: skip
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "stopped" in process.stdout.read()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
        shutil.rmtree(path, ignore_errors=True)
