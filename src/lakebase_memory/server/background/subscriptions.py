"""Replay a response's stored events after a sequence number, then follow it live.

Events are always read from the database, so a follower sees the same sequence wherever it
is served. What differs is how it learns of new ones: a response this process runs wakes its
followers when a batch is stored (`Wakeups`); another process's is polled every
RESPONSE_POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from lakebase_memory.server.background.rows import TERMINAL_EVENTS, ResponseRows


class Wakeups:
    """In-process signals: "response X has new events stored"."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    def notify(self, response_id: str) -> None:
        for event in self._waiting.get(response_id, ()):
            event.set()

    async def wait(self, response_id: str, timeout: float) -> None:
        """Until `notify(response_id)` or `timeout` seconds, whichever is first."""
        event = asyncio.Event()
        self._waiting.setdefault(response_id, set()).add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            waiting = self._waiting.get(response_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiting[response_id]


async def follow(
    rows: ResponseRows,
    wakeups: Wakeups,
    response_id: str,
    user_id: str,
    after: int,
    poll_seconds: float,
) -> AsyncIterator[dict[str, Any]]:
    """The events with sequence_number > `after`, then each new one, to the terminal event.

    Ends early (without a terminal event) if the response is deleted meanwhile."""
    while True:
        batch = await rows.events_after(response_id, after)
        for event in batch:
            after = event["sequence_number"]
            yield event
            if event["type"] in TERMINAL_EVENTS:
                return
        if batch:
            continue  # maybe more than one page stored already
        row = await rows.get(response_id, user_id)
        if row is None:
            return  # deleted (its thread or its user erased)
        if row.finished:
            # The terminal event is stored with the finished status, in one transaction: read
            # again, it is there (unless `after` was already past it).
            if not await rows.events_after(response_id, after, limit=1):
                return
            continue
        await wakeups.wait(response_id, poll_seconds)
