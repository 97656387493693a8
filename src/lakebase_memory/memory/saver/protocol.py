"""The saver's operations protocol and what all its parts share, without I/O.

Each operation is a generator that yields `Query`s and receives their rows (`Op`); `sync.py` and
`aio.py` only run those queries on a connection (each operation in one transaction when it
writes) and apply the cache updates an operation queued (`AfterCommit`) once its transaction
committed. So the two savers cannot drift apart: they share every decision. The operations
themselves are in `read_path.py`, `write_path.py` and `maintenance.py`, composed into
`ops.BaseLinearSaver`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
)

from lakebase_memory.memory.saver.cache import MessageCache
from lakebase_memory.memory.saver.message_codec import COMPACT, decode_message

T = TypeVar("T")
# The configurable key a turn's writes carry its lease in (see `turns.py`); "__" keeps it out
# of checkpoint metadata.
TURN_KEY = "__lakebase_turn_id"
READ_ONLY_KEY = "__lakebase_read_only"  # see `read_only`
Row = dict[str, Any]
AfterCommit = list[Callable[[], None]]

PRUNE_STRATEGIES = ("keep_latest", "delete")
# How long a turn's lease lasts unless renewed; a crashed process's lease ends after it.
DEFAULT_LEASE_SECONDS = 60.0
# A read that finds a referenced log entry missing (deleted between its two queries by a
# concurrent prune) starts again; more misses than this mean the log is damaged.
READ_ATTEMPTS = 3


class MessageLogError(RuntimeError):
    """A checkpoint refers to log entries that are not in the database."""


class ThreadBusyError(RuntimeError):
    """Another turn holds the thread's lease."""

    def __init__(self, thread_id: str, seconds_left: float | None) -> None:
        wait = f" (its lease ends within {seconds_left:.0f} s)" if seconds_left else ""
        super().__init__(
            f"Thread '{thread_id}' is busy with another turn{wait}: wait for it to finish, "
            "then send this one again."
        )
        self.thread_id = thread_id
        self.seconds_left = seconds_left


class StaleTurnError(RuntimeError):
    """A turn's write arrived after its thread was deleted or its lease was taken over."""


@dataclass(frozen=True)
class Query:
    """One statement for a driver to run. `many`: `params` is a list of parameter rows.

    `BEGIN` is not a statement: it tells the driver to open the operation's transaction
    (which commits when the operation ends); statements before it run in autocommit.
    """

    sql: str
    params: Sequence[Any] | Mapping[str, Any] | None = None
    fetch: bool = False
    many: bool = False


BEGIN = Query("BEGIN")


@dataclass(frozen=True)
class SaveParts:
    """What a checkpoint or a task's writes adds to the one save statement."""

    params: dict[str, Any]
    size: int
    blobs: bool = False
    checkpoint: bool = False
    writes: str | None = None


@dataclass(frozen=True)
class LogPlan:
    seqs: list[int]
    appended: list[tuple[int, str | None, str, bytes]]  # (seq, message id, type, blob)
    learned: dict[int, BaseMessage]
    next_seq: int


Op = Generator[Query, list[Row], T]
Resolved = dict[str, Mapping[int, BaseMessage]]  # thread id -> log entries by number


def new_turn_id() -> str:
    return str(uuid.uuid4())


def thread_id_of(config: RunnableConfig) -> str:
    try:
        return str(config["configurable"]["thread_id"])
    except KeyError:
        raise ValueError(
            "the config has no thread_id: pass {'configurable': {'thread_id': ...}}"
        ) from None


class SaverCore(BaseCheckpointSaver[str]):
    """What every part of the saver relies on: LangGraph's serializer (`serde`) and the
    process's message cache."""

    cache: MessageCache

    def _load_entry(self, entry: Row) -> BaseMessage:
        if entry["type"] == COMPACT:
            return decode_message(entry["blob"], entry["message_id"])
        message: BaseMessage = self.serde.loads_typed((entry["type"], entry["blob"]))
        return message


def checkpoint_key(
    config: RunnableConfig, checkpoint_id: str | None = None
) -> tuple[str, str, str]:
    """(thread, namespace, checkpoint id) of `config`, or of its child `checkpoint_id`."""
    configurable = config["configurable"]
    return (
        str(configurable["thread_id"]),
        configurable.get("checkpoint_ns", ""),
        str(checkpoint_id or configurable.get("checkpoint_id")),
    )


def with_turn(config: RunnableConfig, turn_id: str, user_id: str | None) -> RunnableConfig:
    """`config` for a run of the turn holding `turn_id`: its writes carry the lease."""
    configurable = {**config.get("configurable", {}), TURN_KEY: turn_id}
    if user_id is not None:
        configurable["user_id"] = user_id
    return {**config, "configurable": configurable}


def read_only(config: RunnableConfig) -> RunnableConfig:
    """`config` for a read whose caller promises not to change the messages it gets: the
    saver hands out its cached messages themselves, not copies (no per-message cost). For
    looking, never for running a graph: a run changes its state."""
    return {**config, "configurable": {**config.get("configurable", {}), READ_ONLY_KEY: True}}


def check_turn(thread_id: str, turn_id: str, head: Row | None) -> None:
    """Raise if a write of turn `turn_id` may not land on the thread (locked `head` row)."""
    if head is None:
        raise StaleTurnError(
            f"Thread '{thread_id}' was deleted while this turn ran; its writes were discarded."
        )
    if str(head["turn_id"]) != turn_id:
        raise StaleTurnError(
            f"This turn's lease on thread '{thread_id}' expired and another turn took the "
            "thread over; this turn's writes were discarded. Send the message again."
        )


def check_prune_arguments(thread_ids: Sequence[str], strategy: str) -> list[str]:
    """The thread ids as strings; raises on a bare string or an unknown strategy."""
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread ids, not a str")
    if strategy not in PRUNE_STRATEGIES:
        raise ValueError(
            f"unknown prune strategy {strategy!r}: use one of {', '.join(PRUNE_STRATEGIES)}"
        )
    return [str(t) for t in thread_ids]
