"""The embedded PostgreSQL heals itself: a server process that dies under the app (killed,
out of memory, stopped by hand) is started again within seconds, on the same socket, so the
pool's next connections work without a restart of the app.

Only for the embedded target: any other server is someone else's to run, and the app's
errors say how to find out why it is away (`lakebase-memory doctor`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg.conninfo import conninfo_to_dict

from lakebase_memory.database.embedded import EmbeddedPostgres

if TYPE_CHECKING:
    from lakebase_memory.database.targets import DatabaseTarget

logger = logging.getLogger(__name__)
CHECK_SECONDS = 1.0  # how often the postmaster is looked for (a file read and a process look-up)


class EmbeddedWatch:
    def __init__(self, server: EmbeddedPostgres, socket_dir: Path) -> None:
        self.server = server
        self.socket_dir = socket_dir
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, server: EmbeddedPostgres, socket_dir: Path) -> EmbeddedWatch:
        watch = cls(server, socket_dir)
        watch._task = asyncio.create_task(watch._loop(), name="lakebase-memory embedded watch")
        return watch

    @classmethod
    def of(cls, target: DatabaseTarget) -> EmbeddedWatch | None:
        """A running watch over `target`'s embedded server, if this process started one."""
        if target.embedded is None:
            return None
        return cls.start(target.embedded, Path(conninfo_to_dict(target.conninfo)["host"]))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            try:
                started = await asyncio.to_thread(self.server.ensure_running)
            except Exception as error:  # e.g. its dead backends still hold shared memory
                if not failing:
                    logger.error("embedded PostgreSQL could not be started again (retrying "
                                 "every %gs): %s", CHECK_SECONDS, error)  # fmt: skip
                failing = True
                continue
            failing = False
            if started is None:
                continue
            self.restarts += 1
            if started != self.socket_dir:
                logger.error(
                    "embedded PostgreSQL started again with its socket in %s, not %s: "
                    "restart the app to reach it", started, self.socket_dir,
                )  # fmt: skip
            else:
                logger.warning("embedded PostgreSQL is running again")
