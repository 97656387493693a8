"""Every process's maintenance of background responses: crash recovery and retention.

A response whose owner died (SIGKILL, a lost machine) keeps status `in_progress` and a lease
that nobody renews. Each process sweeps, at start and every RESPONSE_SWEEP_SECONDS, for
responses whose lease expired, and finishes them as `failed` with a reason and a terminal
event, so a follower's stream ends and no response stays in progress for longer than
RESPONSE_LEASE_SECONDS + RESPONSE_SWEEP_SECONDS. The rows are locked with SKIP LOCKED, so
replicas sweeping at once finish each response once.

Retention deletes finished responses older than RESPONSE_RETENTION_HOURS, on the same loop
(at most every few minutes: it is cheap, but need not be frequent).
"""

from __future__ import annotations

import logging
import time

from lakebase_memory.config import Settings
from lakebase_memory.server.background.rows import ResponseRows
from lakebase_memory.server.periodic import PeriodicTask

logger = logging.getLogger("lakebase_memory.server.background")

OWNER_GONE = {
    "code": "server_gone",
    "message": "The server process running this response stopped before it was complete "
    "(its lease expired): send the message again.",
}
RETENTION_EVERY_SECONDS = 300.0


class ResponseMaintenance(PeriodicTask):
    def __init__(self, rows: ResponseRows, settings: Settings) -> None:
        self.rows = rows
        self.settings = settings
        self.sweeps = 0  # completed sweeps, failed ones included (for tests)
        self.interval_seconds = settings.response_sweep_seconds
        self._last_retention = float("-inf")

    def start(self) -> ResponseMaintenance:
        self.start_loop("lakebase-memory responses")
        return self

    async def sweep(self) -> list[str]:
        """Fail the responses whose owner's lease expired; their ids."""
        failed: list[str] = []
        while batch := await self.rows.abandon("failed", OWNER_GONE):
            failed += batch
        for response_id in failed:
            logger.warning("background response %s: its process stopped; marked failed",
                           response_id)  # fmt: skip
        return failed

    async def apply_retention(self) -> int:
        deleted = await self.rows.delete_finished_before(self.settings.response_retention_hours)
        if deleted:
            logger.info("retention: deleted %d finished background responses", deleted)
        return deleted

    async def run_once(self) -> None:
        try:
            await self.sweep()
            every = min(RETENTION_EVERY_SECONDS, self.settings.response_retention_hours * 3600)
            if time.monotonic() - self._last_retention >= every:
                await self.apply_retention()
                self._last_retention = time.monotonic()
        except Exception as error:  # the database is down: the next sweep tries again
            logger.warning("sweeping background responses failed: %s", error)
        finally:
            self.sweeps += 1
