"""Which PostgreSQL the app uses, decided once at start-up.

Order: Lakebase settings > `DATABASE_URL` > the standard `PG*` variables > the embedded
PostgreSQL. Contradictory settings are an error rather than a silent choice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from lakebase_memory.config import Settings
from lakebase_memory.database.embedded import EmbeddedPostgres
from lakebase_memory.database.lakebase import LakebaseConnector, lakebase_spec
from lakebase_memory.errors import ConfigurationError, first_line

logger = logging.getLogger(__name__)

# REFERENCE 7: the reference's exact text when a deployed app has no database configured.
MISSING_LAKEBASE_CONFIGURATION = (
    "LAKEBASE_INSTANCE_NAME environment variable is required but not set. "
    "Please set it in your environment:\n"
    "  LAKEBASE_INSTANCE_NAME=<your-lakebase-instance-name>"
)
DATABASE_HINT = (
    "Check that the database is running and reachable ({location}); `lakebase-memory doctor` "
    "finds the cause."
)


class TargetKind(StrEnum):
    EMBEDDED = "embedded"
    POSTGRES = "postgres"
    LAKEBASE = "lakebase"


@dataclass
class DatabaseTarget:
    """A started database target: how to connect, as whom, and where the data lives."""

    kind: TargetKind
    conninfo: str  # without a password for Lakebase: `password()` supplies one per login
    location: str
    embedded: EmbeddedPostgres | None = field(default=None, repr=False)
    lakebase: LakebaseConnector | None = field(default=None, repr=False)
    # The latest login diagnosis of a pool timeout (when it started, its outcome), which
    # requests failing meanwhile share (`server.errors`).
    diagnosis: tuple[float, asyncio.Future[BaseException | None]] | None = field(
        default=None, repr=False, compare=False
    )

    async def login_conninfo(self) -> str:
        """Conninfo for one connection made now (with a fresh credential on Lakebase)."""
        if self.lakebase is None:
            return self.conninfo
        return make_conninfo(self.conninfo, password=await self.lakebase.password())

    def explain(self, error: BaseException) -> str:
        """What a user should read when connecting failed with `error`."""
        if self.lakebase is not None:
            return self.lakebase.explain_login_failure(error)
        return (
            f"The memory database is not available: {first_line(error)}. "
            + DATABASE_HINT.format(location=self.location)
        )

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def open_target(settings: Settings) -> DatabaseTarget:
    """Resolve the configured target and start (or look up) what it needs. Blocking."""
    spec = lakebase_spec(settings)
    if spec is not None:
        if settings.database_url:
            raise ConfigurationError(
                "Both DATABASE_URL and LAKEBASE_* settings are set: choose one database. "
                "Remove DATABASE_URL to use Lakebase, or the LAKEBASE_* lines to use that URL."
            )
        connector = LakebaseConnector(spec, settings)
        connector.resolve()
        location = (
            f"Lakebase {spec.kind.value} '{connector.name}' at {connector.host}, "
            f"database {spec.database}, as {connector.user}"
        )
        return DatabaseTarget(TargetKind.LAKEBASE, connector.conninfo(), location,
                              lakebase=connector)  # fmt: skip
    if settings.database_url:
        conninfo = _with_connect_timeout(settings.database_url, settings)
        return DatabaseTarget(TargetKind.POSTGRES, conninfo, describe_conninfo(conninfo))
    if settings.pghost:
        conninfo = _with_connect_timeout(_pg_variables_conninfo(settings), settings)
        return DatabaseTarget(TargetKind.POSTGRES, conninfo, describe_conninfo(conninfo))
    if settings.on_databricks_app:
        # An embedded database inside an app container is lost at every redeploy.
        raise ConfigurationError(MISSING_LAKEBASE_CONFIGURATION)
    embedded = EmbeddedPostgres(settings.lakebase_memory_data_dir)
    conninfo = _with_connect_timeout(embedded.start(), settings)
    return DatabaseTarget(TargetKind.EMBEDDED, conninfo, str(embedded.pgdata), embedded)


def describe_conninfo(conninfo: str) -> str:
    """`user@host:port/dbname`, never the password."""
    params = conninfo_to_dict(conninfo)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    user = params.get("user") or ""
    user_part = f"{user}@" if user else ""
    return f"postgresql://{user_part}{host}:{port}/{params.get('dbname') or user or ''}"


def _pg_variables_conninfo(settings: Settings) -> str:
    # libpq reads PG* from the process environment only; these may come from dotenv files.
    values = {
        "host": settings.pghost,
        "port": settings.pgport,
        "dbname": settings.pgdatabase,
        "user": settings.pguser,
        "password": settings.pgpassword,
        "sslmode": settings.pgsslmode,
        "application_name": settings.pgappname,
    }
    return make_conninfo("", **{k: v for k, v in values.items() if v})


def _with_connect_timeout(conninfo: str, settings: Settings) -> str:
    if "connect_timeout" in conninfo_to_dict(conninfo):
        return conninfo
    return make_conninfo(conninfo, connect_timeout=settings.db_connect_timeout)
