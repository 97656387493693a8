"""The embedded PostgreSQL 18 set up the way a new Lakebase instance is.

What a fresh instance has, per the Lakebase docs, and what this makes on first start:
- `databricks_superuser`: NOLOGIN, inherits pg_read_all_data, pg_write_all_data, pg_monitor;
- the owner's role (named after the creator's email): LOGIN CREATEDB CREATEROLE BYPASSRLS,
  member of databricks_superuser (without ADMIN OPTION, so it cannot hand that role on), and
  NOT a PostgreSQL superuser, so privilege tests mean something;
- database `databricks_postgres`, owned by the owner, so the owner also owns its schema
  `public` (owned by pg_database_owner since PostgreSQL 15), where nobody else may CREATE.
The `databricks_auth` extension is found through `extension_control_path` (PostgreSQL 18) in
this package's own folder; each database creates it, as on Lakebase.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lakebase_memory.database.embedded import PORT, EmbeddedPostgres
from lakebase_memory.errors import EmbeddedDatabaseError
from lakebase_memory.local_lakebase.state import DATABASE_NAME, Identity

logger = logging.getLogger(__name__)

SUPERUSER_ROLE = "databricks_superuser"
# PostgreSQL 18 appends "extension" to each element: the control and script files live in
# <this package>/extension/.
EXTENSION_BASE = Path(__file__).resolve().parent
# Relative to the data directory, where the extension's SECURITY DEFINER function reads it.
IDENTITIES_FILE = "databricks_workspace_identities.json"
RELOAD_TIMEOUT = 10.0


class LakebaseDatabase:
    """The server, its superuser conninfo, and the set-up only the platform may do."""

    def __init__(self, data_dir: Path) -> None:
        self.server = EmbeddedPostgres(data_dir)
        self._admin: str | None = None

    def start(self) -> None:
        self._admin = self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self._admin = None

    def admin_conninfo(self, dbname: str = DATABASE_NAME) -> str:
        """Superuser conninfo over the Unix socket (the platform's own access)."""
        if self._admin is None:
            raise RuntimeError("the local Lakebase database is not running")
        return make_conninfo(self._admin, dbname=dbname)

    @property
    def socket_path(self) -> Path:
        host = conninfo_to_dict(self.admin_conninfo())["host"]
        return Path(str(host)) / f".s.PGSQL.{PORT}"

    # --- set-up ---------------------------------------------------------------------------

    def bootstrap(self, owner: str) -> None:
        """Make the instance's roles and database; idempotent."""
        self._use_extension_folder()
        with psycopg.connect(self.admin_conninfo("postgres"), autocommit=True) as conn:
            if not _role_exists(conn, SUPERUSER_ROLE):
                conn.execute(
                    sql.SQL(
                        "CREATE ROLE {r} NOLOGIN; "
                        "GRANT pg_read_all_data, pg_write_all_data, pg_monitor TO {r}"
                    ).format(r=sql.Identifier(SUPERUSER_ROLE))
                )
            if not _role_exists(conn, owner):
                conn.execute(
                    sql.SQL(
                        "CREATE ROLE {o} LOGIN CREATEDB CREATEROLE BYPASSRLS; GRANT {s} TO {o}"
                    ).format(o=sql.Identifier(owner), s=sql.Identifier(SUPERUSER_ROLE))
                )
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if exists is None:
                conn.execute(
                    sql.SQL("CREATE DATABASE {d} OWNER {o}").format(
                        d=sql.Identifier(DATABASE_NAME), o=sql.Identifier(owner)
                    )
                )

    def publish_identities(self, identities: list[Identity]) -> None:
        """Write the workspace directory where databricks_create_role() reads it."""
        document = {
            "identities": [
                {
                    "name": identity.name,
                    "type": identity.kind.value,
                    "id": identity.scim_id,
                    "display_name": identity.display_name,
                }
                for identity in identities
            ]
        }
        target = self.server.pgdata / IDENTITIES_FILE
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=1))
        temporary.chmod(0o644)  # the server's system user reads it; it holds no secrets
        os.replace(temporary, target)  # never a half-written file for the server to read

    def create_app_role(self, role: str) -> None:
        """What attaching a Lakebase resource to an app does: a login role named after its
        service principal, with CONNECT and CREATE on the database."""
        with psycopg.connect(self.admin_conninfo("postgres"), autocommit=True) as conn:
            if not _role_exists(conn, role):
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            conn.execute(
                sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(
                    sql.Identifier(DATABASE_NAME), sql.Identifier(role)
                )
            )

    def _use_extension_folder(self) -> None:
        wanted = f"{EXTENSION_BASE}:$system"
        self._make_readable(EXTENSION_BASE / "extension")
        with psycopg.connect(self.admin_conninfo("postgres"), autocommit=True) as conn:
            if _setting(conn) == wanted:
                return
            conn.execute(
                sql.SQL("ALTER SYSTEM SET extension_control_path = {}").format(sql.Literal(wanted))
            )
            conn.execute("SELECT pg_reload_conf()")
        # The postmaster applies a reload asynchronously: wait until new sessions see it.
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while True:
            with psycopg.connect(self.admin_conninfo("postgres"), autocommit=True) as conn:
                if _setting(conn) == wanted:
                    return
            if time.monotonic() > deadline:
                raise EmbeddedDatabaseError(
                    "The embedded PostgreSQL did not take the new extension_control_path."
                )
            time.sleep(0.05)

    @staticmethod
    def _make_readable(folder: Path) -> None:
        # As root, the server runs as its own system user: it must reach and read these files.
        # Only missing bits are added, so an already readable install is left untouched.
        if os.geteuid() != 0:
            return
        wanted = [(folder, 0o005), *((parent, 0o001) for parent in folder.parents)]
        wanted += [(file, 0o004) for file in folder.iterdir()]
        for path, bits in wanted:
            mode = path.stat().st_mode
            if mode & bits != bits:
                path.chmod(mode | bits)


def _role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def _setting(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_setting('extension_control_path')").fetchone()
    return str(row[0]) if row else ""
