"""The server's retention task: the configured policy at start-up, then every interval.

The policy is the thread rules of the settings (MEMORY_RETENTION_DAYS,
MEMORY_MAX_THREADS_PER_USER) and, whenever the task runs, the deletion of the long-term
memories whose TTL has passed; with MEMORY_ITEM_TTL_MINUTES set, it runs for that alone.

It runs in the background so that start-up never waits for a long first pass, logs what each
pass deleted, and never takes the server down: a failed pass (database down, a lock timeout)
is logged and the next one tries again. Replicas coordinate through the pass's advisory lock
(see `lakebase_memory.memory.retention`); shutdown cancels it, rolling back the open batch.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lakebase_memory.config import Settings
from lakebase_memory.memory.lifecycle import ThreadStore
from lakebase_memory.memory.retention import RetentionPolicy, RetentionReport
from lakebase_memory.server.periodic import PeriodicTask

logger = logging.getLogger("lakebase_memory.retention")


def policy_from(settings: Settings) -> RetentionPolicy:
    threads = RetentionPolicy(
        max_age_days=settings.memory_retention_days,
        max_threads_per_user=settings.memory_max_threads_per_user,
    )
    # Memories expire only when given a TTL (MEMORY_ITEM_TTL_MINUTES, or a library's put with
    # one); a pass that runs anyway sweeps them too.
    expire = threads.active or settings.memory_item_ttl_minutes is not None
    return replace(threads, expire_memories=expire)


class RetentionTask(PeriodicTask):
    """One background loop applying the policy with the server's pool."""

    def __init__(
        self,
        conn: AsyncConnectionPool[Any] | AsyncConnection[Any],
        policy: RetentionPolicy,
        *,
        checkpoint_schema: str = "public",
        interval_seconds: float = 3600.0,
        batch_size: int = 500,
    ) -> None:
        self.store = ThreadStore(conn, checkpoint_schema)
        self.policy = policy
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size
        self.passes = 0  # completed passes, failed ones included (for tests and health)

    @classmethod
    def start(
        cls, conn: AsyncConnectionPool[Any] | AsyncConnection[Any], settings: Settings
    ) -> RetentionTask | None:
        """Start the loop if the settings set any rule; None (nothing runs) otherwise."""
        policy = policy_from(settings)
        if not policy.active:
            return None
        task = cls(
            conn,
            policy,
            checkpoint_schema=settings.checkpoint_schema,
            interval_seconds=settings.memory_retention_interval_seconds,
            batch_size=settings.memory_retention_batch_size,
        )
        task.start_loop("lakebase-memory retention")
        logger.info(
            "retention: %s, every %gs",
            policy.describe(),
            settings.memory_retention_interval_seconds,
        )
        return task

    async def run_once(self) -> RetentionReport | None:
        """One pass; its report, or None if it failed (the error is logged, not raised)."""
        try:
            report = await self.store.apply_retention(self.policy, batch_size=self.batch_size)
        except Exception as error:
            logger.warning("retention pass failed, retrying in %gs: %s", self.interval_seconds,
                           error, exc_info=logger.isEnabledFor(logging.DEBUG))  # fmt: skip
            return None
        finally:
            self.passes += 1
        if report.skipped:
            logger.info("retention: another process is applying retention; skipped this pass")
        elif report.changed:
            logger.info(
                "retention: deleted %d expired and %d excess threads (%d checkpoints, "
                "%d messages), trimmed %d, deleted %d expired memories in %d batches",
                report.expired,
                report.excess,
                report.deleted.checkpoints,
                report.deleted.checkpoint_messages,
                report.trimmed,
                report.memories,
                report.batches,
            )
        else:
            logger.debug("retention: nothing to delete")
        return report
