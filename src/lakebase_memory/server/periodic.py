"""A loop of a server process: one pass now, then one every interval, until stopped.

The retention task and the background responses' sweeper are such loops; a pass handles its
own errors (a database that is down is tried again at the next pass), so the loop never ends
on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class PeriodicTask:
    """Subclasses give `run_once` and `interval_seconds`; `start_loop` and `stop` run it."""

    interval_seconds: float
    _task: asyncio.Task[None] | None = None

    async def run_once(self) -> Any:
        raise NotImplementedError

    def start_loop(self, name: str) -> None:
        self._task = asyncio.create_task(self._loop(), name=name)

    async def _loop(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval_seconds)

    async def stop(self) -> None:
        """Cancel the loop and wait for it (an open transaction rolls back)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
