"""How many connections each server process may pool, so that N processes never exceed the
database's connection limit.

A pool larger than what the server accepts does not fail at start-up: it fails under load, as
a pool timeout while the server refuses logins with "too many clients". So the size is decided
from the server's own limit, once, before the pools open.
"""

from __future__ import annotations

from dataclasses import dataclass

from lakebase_memory.config import Settings
from lakebase_memory.errors import ConfigurationError

# Left free for what is not a server process's pool: the supervisor's checks, a login
# diagnosis, `lakebase-memory doctor`, a psql session during an incident.
MAINTENANCE_CONNECTIONS = 3


@dataclass(frozen=True)
class ServerFacts:
    """What start-up reads from the server (`pool.probe_server`)."""

    version: str
    max_connections: int
    reserved: int  # slots only superusers (or pg_use_reserved_connections) may take

    def connection_budget(self, settings: Settings) -> int:
        """Connections the app's pools may hold together."""
        if settings.db_max_connections is not None:
            return settings.db_max_connections
        return max(0, self.max_connections - self.reserved - MAINTENANCE_CONNECTIONS)

    def pool_size(self, settings: Settings) -> int:
        """Each process's pool: DB_POOL_MAX_SIZE, or its share of the budget if smaller.

        Raises:
            ConfigurationError: the budget cannot give every process one connection.
        """
        workers = settings.app_workers
        budget = self.connection_budget(settings)
        share = budget // workers
        if share < 1:
            raise ConfigurationError(
                f"{workers} server processes need at least {workers} database connections, "
                f"but the app may use {budget} (the server's max_connections is "
                f"{self.max_connections}, {self.reserved} reserved, "
                f"{MAINTENANCE_CONNECTIONS} kept for maintenance). Start fewer workers, "
                "raise DB_MAX_CONNECTIONS, or raise the server's max_connections."
            )
        return min(settings.db_pool_max_size, share)
