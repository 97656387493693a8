"""What a move reports (`TransferReport`, one `ThreadResult` per thread), its errors, and
the shapes the other transfer modules pass around."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from langgraph.checkpoint.base import CheckpointTuple
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lakebase_memory.errors import LakebaseMemoryError

Source = AsyncConnection[Any] | AsyncConnectionPool[Any]
Status = Literal["imported", "exported", "skipped", "failed"]
OnThread = Callable[["ThreadResult"], None]

DEFAULT_BATCH_SIZE = 100
# Columns of the thread's head row that describe the thread rather than its storage, kept
# across an import.
KEPT_HEAD_COLUMNS = ("user_id", "created_at", "updated_at")

LOG = "ai_chatbot.checkpoint_messages"
HEADS = "ai_chatbot.checkpoint_threads"


class TransferError(LakebaseMemoryError):
    """A thread cannot be moved as asked; the message says why and what to do."""


class TargetUnavailableError(TransferError):
    """The database to export to cannot be reached."""


class UnknownThreadError(TransferError):
    """Thread ids that have no checkpoint in the source database."""

    def __init__(self, thread_ids: Sequence[str]) -> None:
        self.thread_ids = list(thread_ids)
        names = ", ".join(repr(t) for t in self.thread_ids)
        super().__init__(
            f"no checkpoints for thread(s) {names} in the memory database: check the ids "
            "(and that CHECKPOINT_SCHEMA names the schema the threads were saved in)"
        )


@dataclass
class ThreadResult:
    """What happened to one thread. Byte counts are the thread's rows' sizes in PostgreSQL."""

    thread_id: str
    status: Status
    reason: str = ""
    checkpoints: int = 0
    writes: int = 0
    bytes_before: int = 0
    bytes_after: int | None = None


@dataclass
class TransferReport:
    """The outcome of an import or export, thread by thread.

    With `dry_run`, every move was made and then rolled back: the statuses and sizes are what
    the real run would give (except into a target database without the stock tables yet,
    where nothing is written and `bytes_after` stays None).
    """

    direction: Literal["import", "export"]
    target: str  # "in place", or the target database without its password
    dry_run: bool
    threads: list[ThreadResult] = field(default_factory=list)

    def _with(self, *statuses: Status) -> list[ThreadResult]:
        return [t for t in self.threads if t.status in statuses]

    @property
    def moved(self) -> list[ThreadResult]:
        """The threads imported or exported."""
        return self._with("imported", "exported")

    @property
    def skipped(self) -> list[ThreadResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[ThreadResult]:
        return self._with("failed")

    @property
    def bytes_before(self) -> int:
        """The moved threads' size before the move."""
        return sum(t.bytes_before for t in self.moved)

    @property
    def bytes_after(self) -> int | None:
        """The moved threads' size after the move (in the target), None if not measured."""
        sizes = [t.bytes_after for t in self.moved]
        return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "target": self.target,
            "dry_run": self.dry_run,
            "moved": len(self.moved),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "threads": [asdict(t) for t in self.threads],
        }


class SkipThread(Exception):
    """Leave this thread as it is (rolls its transaction back)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ReadCheckpoint:
    """One checkpoint of a thread as read, and its writes as the put_writes calls to replay."""

    item: CheckpointTuple
    calls: list[tuple[str, str, list[tuple[str, Any]]]]  # (task_id, task_path, writes)


# A moved thread: its checkpoints, and its size before and after the move (None: not measured).
MovedThread = tuple[list[ReadCheckpoint], int, int | None]
# Moves one thread (by id) in its own transaction, or raises `SkipThread` to leave it as it is.
MoveThread = Callable[[str], Awaitable[MovedThread]]
