"""`LocalLakebase`: control plane, TLS proxy and embedded PostgreSQL, started together."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn
from psycopg.conninfo import make_conninfo

from lakebase_memory.errors import ConfigurationError
from lakebase_memory.local_lakebase.control_plane import ControlPlaneContext, create_control_plane
from lakebase_memory.local_lakebase.credentials import TokenStore
from lakebase_memory.local_lakebase.database import LakebaseDatabase
from lakebase_memory.local_lakebase.pg_proxy import PgProxy
from lakebase_memory.local_lakebase.state import DATABASE_NAME, App, Identity, Workspace
from lakebase_memory.local_lakebase.tls import ensure_certificate, server_context

logger = logging.getLogger(__name__)

LOCAL_HOST = "127.0.0.1"
START_TIMEOUT = 30.0


class LocalLakebase:
    """A Databricks workspace with one Lakebase instance, on this machine.

    - REST on `host` (FastAPI + uvicorn): the calls `databricks-sdk` makes for Lakebase
      (`current_user.me`, `database.*`, `postgres.*`, `apps.get`, service principals, OAuth M2M),
      and embedding endpoints (`serving_endpoints.query`, offline vectors: `serving.py`).
    - PostgreSQL on `pg_host:pg_port`: TLS only, database credentials as passwords, in front of
      an embedded PostgreSQL 18 set up like a new instance (see `database.py`).
    - Identities, their REST tokens, apps and grants persist in `data_dir/workspace.json`;
      database credentials and OAuth access tokens live in memory only.

    Who may mint database credentials: the owner, and identities granted CAN USE
    (`grant_can_use`); an app's service principal has it from `add_app` on.
    `start()` returns once both servers accept connections; `stop()` is idempotent. Both run
    on one background thread's event loop. Usable as a context manager.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        instance_name: str = "local-lakebase",
        owner: str = "owner@example.com",
        token_ttl: float = 3600.0,
        http_port: int = 0,
        pg_port: int = 0,
        project: str = "local-project",
        branch: str = "main",
        endpoint: str = "primary",
    ) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.instance_name = instance_name
        self.owner = owner
        self.token_ttl = token_ttl  # read at every mint: tests may shorten it while running
        self.project, self.branch, self.endpoint = project, branch, endpoint
        self.pg_host = LOCAL_HOST
        self.host = ""  # http://127.0.0.1:<port>, known once started
        self.pg_port = 0
        self._requested_ports = (http_port, pg_port)
        self._database = LakebaseDatabase(self.data_dir / "postgres")
        self._workspace: Workspace | None = None
        self._database_tokens: TokenStore | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._proxy_ready = threading.Event()
        self._failure: BaseException | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything (or nothing: a failed start cleans up after itself)."""
        if self._thread is not None:
            return
        self._proxy_ready.clear()
        self._failure = None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        workspace = Workspace.load_or_create(
            self.data_dir / "workspace.json",
            owner=self.owner,
            instance_name=self.instance_name,
            project=self.project,
            branch=self.branch,
            endpoint=self.endpoint,
        )
        ssl_context = server_context(*ensure_certificate(self.data_dir / "tls"))
        sockets: list[socket.socket] = []
        try:
            self._database.start()
            self._database.bootstrap(self.owner)
            self._database.publish_identities(workspace.all_identities())
            workspace.on_identities_changed = self._database.publish_identities
            # Prefer last run's ports, so the .env.local lines stay right across restarts.
            http_sock = _bind(self._requested_ports[0], workspace.ports.get("http"))
            sockets.append(http_sock)
            pg_sock = _bind(self._requested_ports[1], workspace.ports.get("pg"))
            sockets.append(pg_sock)
            http_port, self.pg_port = http_sock.getsockname()[1], pg_sock.getsockname()[1]
            self.host = f"http://{LOCAL_HOST}:{http_port}"
            workspace.remember_ports(http_port, self.pg_port)
            self._workspace = workspace
            self._database_tokens = TokenStore(issuer=f"{self.host}/oidc")
            context = ControlPlaneContext(
                workspace=workspace,
                database_tokens=self._database_tokens,
                access_tokens=TokenStore(issuer=f"{self.host}/oidc"),
                host=self.host,
                pg_host=self.pg_host,
                token_ttl=lambda: self.token_ttl,
            )
            config = uvicorn.Config(
                create_control_plane(context),
                log_level="warning",
                log_config=None,  # leave the host process's logging alone
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=5,
            )
            self._server = uvicorn.Server(config)
            proxy = PgProxy(
                ssl_context=ssl_context,
                backend_socket=self._database.socket_path,
                authenticate=self._check_login,
            )
            self._thread = threading.Thread(
                target=self._run,
                args=(proxy, http_sock, pg_sock),
                name="local-lakebase",
                daemon=True,
            )
            self._thread.start()
            sockets.clear()  # the thread owns them now
            self._wait_until_ready()
        except BaseException:
            for sock in sockets:
                sock.close()
            self.stop()
            raise
        logger.info("local Lakebase ready: REST %s, PostgreSQL port %s", self.host, self.pg_port)

    def stop(self) -> None:
        """Stop the servers and the embedded PostgreSQL. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            if self._server is not None:
                self._server.should_exit = True
            thread.join(timeout=START_TIMEOUT)
        self._database.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, proxy: PgProxy, http_sock: socket.socket, pg_sock: socket.socket) -> None:
        async def serve() -> None:
            await proxy.start(pg_sock)
            self._proxy_ready.set()
            try:
                assert self._server is not None
                await self._server.serve(sockets=[http_sock])
            finally:
                await proxy.close()

        try:
            asyncio.run(serve())
        except BaseException as error:
            self._failure = error
            logger.exception("local Lakebase stopped on an error")

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not (self._server and self._server.started and self._proxy_ready.is_set()):
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError(f"the local Lakebase failed to start: {self._failure!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the local Lakebase did not start in {START_TIMEOUT:.0f} s")
            time.sleep(0.01)

    def _check_login(self, user: str, password: str) -> bool:
        assert self._database_tokens is not None
        return self._database_tokens.identity_of(password) == user

    # --- the workspace --------------------------------------------------------------------

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            raise RuntimeError("the local Lakebase is not started: call start() first")
        return self._workspace

    @property
    def owner_token(self) -> str:
        """The owner's REST token (a personal access token)."""
        return self.workspace.require(self.owner).token

    @property
    def endpoint_name(self) -> str:
        """`projects/{project}/branches/{branch}/endpoints/{endpoint}`."""
        return self.workspace.endpoint.name

    def identity(self, name: str) -> Identity:
        return self.workspace.require(name)

    def add_user(self, email: str) -> Identity:
        """A workspace user (created if new). Users log in to Postgres with their email."""
        return self.workspace.add_user(email)

    def add_service_principal(self, display_name: str) -> Identity:
        """A service principal (created if new; display names are unique here). Its `name` is
        its application id: its Postgres user name. It has a REST `token` and an OAuth
        `client_secret`; it may mint database credentials only once granted CAN USE."""
        return self.workspace.add_service_principal(display_name)

    def add_app(self, name: str) -> Identity:
        """A Databricks App (created if new) and its service principal, which is returned. The
        principal may mint credentials, but has no Postgres role until `attach_app_resource`."""
        return self.workspace.require(self.workspace.add_app(name).service_principal)

    def app(self, name: str) -> App:
        found = self.workspace.app(name)
        if found is None:
            raise KeyError(f"no app named {name!r} in the local workspace")
        return found

    def attach_app_resource(self, app_name: str) -> None:
        """Add the instance to the app as a database resource ("Can connect and create"): the
        principal gets CAN USE and a login role named after its client id, with CONNECT and
        CREATE on databricks_postgres, as on Databricks. Idempotent."""
        app = self.app(app_name)
        self._database.create_app_role(app.service_principal)
        self.workspace.mark_database_resource(app_name)

    def add_branch(self, branch_id: str) -> str:
        """A branch of the autoscaling project without compute (created if new): it has no
        endpoint, so nothing can connect to it. Returns its name, projects/{p}/branches/{b}."""
        branch = self.workspace.add_branch(branch_id)
        return f"{self.workspace.endpoint.project_name}/branches/{branch.branch}"

    def grant_can_use(self, identity_name: str) -> None:
        """Let this identity mint database credentials for the instance and the endpoint."""
        self.workspace.grant_can_use(identity_name)

    def revoke_can_use(self, identity_name: str) -> None:
        self.workspace.revoke_can_use(identity_name)

    def rotate_token(self, identity_name: str) -> Identity:
        """Give the identity a new REST token; the old one gets 403 "Invalid access token."."""
        return self.workspace.rotate_token(identity_name)

    def issue_database_credential(self, identity_name: str, ttl: float | None = None) -> str:
        """A database credential minted directly, for tests that are not about the REST API."""
        assert self._database_tokens is not None, "start() first"
        identity = self.identity(identity_name)
        ttl = self.token_ttl if ttl is None else ttl
        return self._database_tokens.issue(identity.name, ttl, self.workspace.instance.uid).token

    # --- connection details ---------------------------------------------------------------

    def env_lines(self) -> list[str]:
        """The `.env.local` lines that point the app at this instance as its owner."""
        return [
            f"DATABRICKS_HOST={self.host}",
            f"DATABRICKS_TOKEN={self.owner_token}",
            f"LAKEBASE_INSTANCE_NAME={self.workspace.instance.name}",
            # The instance's DNS name (read_write_dns) is 127.0.0.1, but the port is not 5432:
            # libpq takes the port from PGPORT when a conninfo names none.
            f"PGPORT={self.pg_port}",
            "PGSSLMODE=require",
        ]

    def app_env(self, app_name: str) -> dict[str, str]:
        """The environment a Databricks App gets: DATABRICKS_* always, PG* (no password: the
        app mints tokens) only with the database resource attached. DATABRICKS_HOST keeps its
        http:// scheme, which the real platform leaves out."""
        app = self.app(app_name)
        principal = self.identity(app.service_principal)
        env = {
            "DATABRICKS_APP_NAME": app.name,
            "DATABRICKS_HOST": self.host,
            "DATABRICKS_CLIENT_ID": principal.name,
            "DATABRICKS_CLIENT_SECRET": principal.client_secret or "",
        }
        if app.database_resource:
            env |= {
                "PGHOST": self.pg_host,
                "PGPORT": str(self.pg_port),
                "PGDATABASE": DATABASE_NAME,
                "PGUSER": principal.name,
                "PGSSLMODE": "require",
                "PGAPPNAME": app.name,
            }
        return env

    def conninfo(self, user: str, password: str, dbname: str = DATABASE_NAME) -> str:
        """A client conninfo for the instance, as an app builds it from the instance's DNS."""
        return make_conninfo(
            host=self.pg_host,
            port=self.pg_port,
            dbname=dbname,
            user=user,
            password=password,
            sslmode="require",
        )

    def admin_conninfo(self, dbname: str = DATABASE_NAME) -> str:
        """Superuser conninfo over the embedded server's Unix socket, for tests to inspect."""
        return self._database.admin_conninfo(dbname)


def _bind(requested: int, previous: int | None) -> socket.socket:
    """A listening-ready TCP socket on 127.0.0.1: the requested port, else last run's, else any."""
    candidates = [requested] if requested else [p for p in (previous, 0) if p is not None]
    for port in candidates:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOCAL_HOST, port))
        except OSError as error:
            sock.close()
            if requested:
                raise ConfigurationError(
                    f"Port {requested} on {LOCAL_HOST} is in use ({error.strerror}); choose "
                    "another one, or 0 for any free port."
                ) from None
            continue
        return sock
    raise AssertionError("binding port 0 cannot fail")
