"""Run a prepared turn as a background response: persist its events, keep its lease, obey
a cancel.

The turn itself is `turns.run_turn`, unchanged: the same events as a direct stream, with the
stored response id in each. Its events are stored in batches (a flush every FLUSH_SECONDS,
and at once for the terminal event), so a token stream costs one INSERT per batch rather
than one per token. The owner's lease is renewed every HEARTBEAT seconds (at most a third of
the lease), and each renewal reads the cancel flag, so a cancel made on another replica
stops the turn within that time; a cancel in this process stops it at once.

What a cancelled turn leaves in its thread: the turn's task is cancelled inside the agent,
so the thread keeps the user's message (saved by the agent's exit-time checkpoint) and the
answer produced so far is stored only in the response (`output`, status `incomplete`); the
thread's turn lease is released as for any turn, so the next message on it is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage

from lakebase_memory.memory.history import message_text
from lakebase_memory.observability import metrics
from lakebase_memory.server.background.rows import (
    TERMINAL_EVENTS,
    LostOwnershipError,
    ResponseRow,
    ResponseRows,
    new_response_id,
)
from lakebase_memory.server.background.subscriptions import Wakeups
from lakebase_memory.server.errors import api_error_for
from lakebase_memory.server.events import error_frame
from lakebase_memory.server.runtime import AppRuntime
from lakebase_memory.server.turns import PreparedTurn, run_turn

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.05  # the longest an event waits before it is stored
MAX_HEARTBEAT_SECONDS = 1.0  # how late a cancel from another replica may be seen


@dataclass
class Snapshot:
    """The response object as its events have built it so far (what GET /responses shows)."""

    response: dict[str, Any]
    done: dict[int, dict[str, Any]] = field(default_factory=dict)  # by output_index
    partial: dict[int, dict[str, Any]] = field(default_factory=dict)  # streaming items
    texts: dict[int, list[str]] = field(default_factory=dict)

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if "response" in event and isinstance(event["response"], dict):
            self.response = event["response"]
        if kind == "response.output_item.added":
            self.partial[event["output_index"]] = dict(event["item"])
        elif kind == "response.output_text.delta":
            self.texts.setdefault(event["output_index"], []).append(event["delta"])
        elif kind == "response.output_item.done":
            self.done[event["output_index"]] = event["item"]
            self.partial.pop(event["output_index"], None)

    def value(self, status: str, *, with_partial: bool = False) -> dict[str, Any]:
        """The response with its output so far; `with_partial`: items still being streamed
        too, marked `incomplete` (a cancelled answer's text so far)."""
        items = dict(self.done)
        if with_partial:
            for index, item in self.partial.items():
                text = "".join(self.texts.get(index, []))
                if item.get("type") == "message":
                    item = {**item, "content": [{"type": "output_text", "text": text,
                                                 "annotations": []}]}  # fmt: skip
                items[index] = {**item, "status": "incomplete"}
        output = [items[i] for i in sorted(items)]
        return {**self.response, "status": status, "output": output}


@dataclass
class Running:
    """A response this process runs."""

    row: ResponseRow
    turn_task: asyncio.Task[None] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.turn_task is not None:
            self.turn_task.cancel()


class EventWriter:
    """One response's events on their way to the database, in batches."""

    def __init__(self, runner: BackgroundRunner, response_id: str, snapshot: Snapshot) -> None:
        self.runner = runner
        self.response_id = response_id
        self.snapshot = snapshot
        self.pending: list[dict[str, Any]] = []
        self.last_sequence = -1
        self.terminal = asyncio.Event()  # a terminal event waits: store it now

    def add(self, event: dict[str, Any]) -> None:
        self.snapshot.apply(event)
        self.pending.append(event)
        self.last_sequence = event["sequence_number"]
        if event["type"] in TERMINAL_EVENTS:
            self.terminal.set()

    async def flush(
        self, status: str = "in_progress", error: dict[str, Any] | None = None,
        *, partial: bool = False,
    ) -> bool:  # fmt: skip
        """Store what is pending (with the snapshot; `status` finished: the end); the
        cancel flag of a running response."""
        batch = self.pending[:]
        del self.pending[: len(batch)]
        cancel = await self.runner.rows.append(
            self.response_id, self.runner.owner, batch,
            self.snapshot.value(status, with_partial=partial), status=status, error=error,
            lease_seconds=self.runner.lease_seconds,
        )  # fmt: skip
        self.runner.batches += 1
        self.runner.events += len(batch)
        self.runner.wakeups.notify(self.response_id)
        return cancel and status == "in_progress"

    def next_sequence(self) -> int:
        self.last_sequence += 1
        return self.last_sequence


class BackgroundRunner:
    """Starts background responses in this process and knows which ones it runs."""

    def __init__(self, runtime: AppRuntime, rows: ResponseRows, wakeups: Wakeups) -> None:
        self.runtime = runtime
        self.rows = rows
        self.wakeups = wakeups
        self.owner = uuid.uuid4()  # this process, as the owner of the responses it runs
        self.running: dict[str, Running] = {}
        self.batches = 0  # stored batches and events: how well the batching works
        self.events = 0

    @property
    def lease_seconds(self) -> float:
        return self.runtime.settings.response_lease_seconds

    async def start(self, turn: PreparedTurn, user_id: str) -> ResponseRow:
        """Store the response (queued) and run the turn in a task of the runtime."""
        turn.response_id = new_response_id()
        initial = {"id": turn.response_id, "object": "response", "created_at": int(time.time()),
                   "status": "queued", "output": [],
                   "custom_outputs": {"thread_id": turn.thread_id}}  # fmt: skip
        try:
            row = await self.rows.create(
                turn.response_id, user_id, turn.thread_id, initial, self.owner,
                self.lease_seconds, input_items(turn.graph_input["messages"]),
            )  # fmt: skip
        except BaseException:
            # The turn will not run: free its thread, as a failed prepare_turn does.
            release = self.runtime.checkpointer.arelease_turn_soon(
                turn.thread_id, turn.turn_id, lease_seconds=self.runtime.settings.turn_lease_seconds
            )
            await asyncio.shield(self.runtime.spawn(release))
            raise
        running = self.running[row.id] = Running(row)
        writer = EventWriter(self, row.id, Snapshot(initial))
        self.runtime.spawn(self._run(running, turn, writer))
        return row

    async def _run(self, running: Running, turn: PreparedTurn, writer: EventWriter) -> None:
        async def consume() -> None:
            async for event in run_turn(self.runtime, turn):
                writer.add(event)

        turn_task = running.turn_task = asyncio.create_task(consume())
        if running.cancelled:  # cancelled before it started
            turn_task.cancel()
        heartbeat = min(self.lease_seconds / 3, MAX_HEARTBEAT_SECONDS)
        next_beat = time.monotonic() + heartbeat
        try:
            while not turn_task.done():
                done = asyncio.ensure_future(writer.terminal.wait())
                await asyncio.wait({turn_task, done}, timeout=FLUSH_SECONDS)
                done.cancel()
                if turn_task.done() or writer.terminal.is_set():
                    break  # the terminal event is stored with the final status, below
                if writer.pending or time.monotonic() >= next_beat:
                    # A flush renews the lease too; the cancel flag comes back with it.
                    if await writer.flush():
                        running.cancel()
                    next_beat = time.monotonic() + heartbeat
            await self._finish(running, turn_task, writer)
        except LostOwnershipError:
            logger.warning("background response %s is no longer this process's (its lease "
                           "expired, or it was deleted): stopping it", running.row.id)  # fmt: skip
            running.cancel()
            await asyncio.gather(turn_task, return_exceptions=True)
        except asyncio.CancelledError:
            # Shutdown after the grace period: stop the turn, and say why in the response.
            running.cancel()
            await asyncio.gather(turn_task, return_exceptions=True)
            error = {"code": "server_shutdown",
                     "message": "The server shut down before the answer was complete: send "
                                "the message again."}  # fmt: skip
            with contextlib.suppress(Exception):
                await asyncio.shield(self._fail(writer, error))
            raise
        except Exception as error:  # the database failed: the sweeper finishes it later
            logger.error("background response %s could not be stored: %s", running.row.id, error)
            running.cancel()
            await asyncio.gather(turn_task, return_exceptions=True)
        finally:
            self.running.pop(running.row.id, None)
            running.finished.set()
            self.wakeups.notify(running.row.id)

    async def _finish(
        self, running: Running, turn_task: asyncio.Task[None], writer: EventWriter
    ) -> None:
        try:
            await turn_task
        except asyncio.CancelledError:
            if not running.cancelled:
                raise
            cancelled = writer.snapshot.value("cancelled", with_partial=True)
            writer.add({"type": "response.cancelled", "sequence_number": writer.next_sequence(),
                        "response": cancelled})  # fmt: skip
            await writer.flush("cancelled", partial=True)
            return
        except Exception as error:
            api_error = await api_error_for(error, self.runtime.target)
            logger.error("background turn on thread %s failed: %s", running.row.thread_id, error,
                         exc_info=api_error.code == "internal_error")  # fmt: skip
            await self._fail(writer, {"code": api_error.code, "message": api_error.message})
            return
        await writer.flush("completed")

    async def _fail(self, writer: EventWriter, error: dict[str, Any]) -> None:
        metrics.count_error(error["code"], stream=True)  # as a direct stream's error frame
        # As a direct stream: the error frame, then (the Responses terminal) response.failed.
        thread_id = writer.snapshot.response.get("custom_outputs", {}).get("thread_id")
        frame = error_frame(error["message"], error["code"], thread_id)
        writer.add({**frame, "sequence_number": writer.next_sequence()})
        failed = {**writer.snapshot.value("failed", with_partial=True), "error": error}
        writer.add({"type": "response.failed", "sequence_number": writer.next_sequence(),
                    "response": failed})  # fmt: skip
        await writer.flush("failed", error, partial=True)

    # --- cancel -----------------------------------------------------------------------------

    async def cancel(self, row: ResponseRow, wait_seconds: float) -> None:
        """Stop the response, in this process or (through the flag) in its owner's; if its
        owner is gone (lease expired), finish it as cancelled here. Waits up to
        `wait_seconds` for it to end."""
        here = self.running.get(row.id)
        if here is not None:
            here.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(here.finished.wait(), wait_seconds)
            return
        await self.rows.request_cancel(row.id, row.user_id)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            current = await self.rows.get(row.id, row.user_id)
            if current is None or current.finished:
                return
            if current.lease_expired:
                await self.rows.abandon("cancelled", None, response_id=row.id)
                continue
            await self.wakeups.wait(row.id, self.runtime.settings.response_poll_seconds)


def input_items(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    """The user's messages of a turn as Responses input items: what a page reattaching to the
    running answer shows above it."""
    return [{"type": "message", "role": "user", "content": message_text(m)}
            for m in messages if isinstance(m, HumanMessage)]  # fmt: skip
