"""The checkpointer methods of both linear savers, written once.

LangGraph's savers have two faces, `get_tuple` and `aget_tuple` and so on. Here each method
names its operation (`ops.BaseLinearSaver`) once and hands it to the saver's driver:
`_call` runs it to its result, `_acall` returns an awaitable of the result. Each saver
implements one of them natively (`LinearPostgresSaver._call` on a psycopg connection,
`AsyncLinearPostgresSaver._acall` on an async one) and the other as a bridge (a worker
thread; the event loop from another thread), so a fix in a method is a fix in both savers.

The drivers also keep the one ordering LangGraph relies on: `Call(saving=)` marks a checkpoint
in flight and `Call(after=)` makes a task's writes wait for that checkpoint to land, so a reply is
never logged before the message it answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from lakebase_memory.database.borrow import require_autocommit
from lakebase_memory.memory.saver.cache import DEFAULT_MAX_THREADS
from lakebase_memory.memory.saver.ops import (
    AfterCommit,
    BaseLinearSaver,
    Op,
    check_prune_arguments,
    checkpoint_key,
)

T = TypeVar("T")
Make = Callable[[AfterCommit], Op[T]]  # builds an operation; `after` collects cache updates
CheckpointKey = tuple[str, str, str]


@dataclass(frozen=True)
class Call:
    """How a driver runs one operation: `repeatable` (again after a dropped connection),
    `saving` (a checkpoint in flight) and `after` (wait for that checkpoint first)."""

    repeatable: bool = True
    saving: CheckpointKey | None = None
    after: CheckpointKey | None = None


PLAIN = Call()


class LinearSaverApi(BaseLinearSaver):
    """`BaseCheckpointSaver`'s methods (sync and async) over a driver's `_call` / `_acall`.

    The constructor is the drivers' too: `conn` is a single connection of the driver's kind
    (`_single`, used by one call at a time under a `_lock`) or a pool of them (each call
    borrows its own); either must be in autocommit, since the saver runs its own
    transactions.
    """

    _single: ClassVar[type]  # the driver's connection class
    _lock: ClassVar[Callable[[], Any]]  # the driver's lock (threading or asyncio)

    def __init__(
        self,
        conn: Any,
        *,
        serde: SerializerProtocol | None = None,
        cache_threads: int = DEFAULT_MAX_THREADS,
    ) -> None:
        super().__init__(serde=serde, cache_threads=cache_threads)
        single = isinstance(conn, self._single)
        if single:
            require_autocommit(conn, type(self).__name__)
        self.conn = conn
        # Only a single shared connection needs it: a pool hands each call its own.
        self._conn_lock = self._lock() if single else None
        self._saving: dict[CheckpointKey, Any] = {}  # checkpoints in flight, by key

    def _call(self, make: Make[T], how: Call = PLAIN) -> T:
        """Run the operation to its result."""
        raise NotImplementedError

    def _acall(self, make: Make[T], how: Call = PLAIN) -> Awaitable[T]:
        """`_call`, awaitable."""
        raise NotImplementedError

    # -- reading -----------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint `config` names, or the thread's latest; None if there is none."""
        return self._call(lambda _: self._op_get_tuple(config))

    def aget_tuple(self, config: RunnableConfig) -> Awaitable[CheckpointTuple | None]:
        return self._acall(lambda _: self._op_get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints matching `config`, metadata `filter` and `before`, newest first."""
        yield from self._call(lambda _: self._op_list(config, filter, before, limit))

    async def alist(  # type: ignore[override]
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in await self._acall(lambda _: self._op_list(config, filter, before, limit)):
            yield item

    # -- writing -----------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save a checkpoint, as a child of `config`'s checkpoint_id; returns its config."""
        make, key = self._put(config, checkpoint, metadata, new_versions)
        return self._call(make, Call(saving=key))

    def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Awaitable[RunnableConfig]:
        make, key = self._put(config, checkpoint, metadata, new_versions)
        return self._acall(make, Call(saving=key))

    def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[Make[RunnableConfig], CheckpointKey]:
        def make(after: AfterCommit) -> Op[RunnableConfig]:
            return self._op_put(config, checkpoint, metadata, new_versions, after)

        return make, checkpoint_key(config, checkpoint["id"])

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Save a task's pending writes on `config`'s checkpoint (idempotent per task)."""
        self._call(
            self._put_writes(config, writes, task_id, task_path), Call(after=checkpoint_key(config))
        )

    def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> Awaitable[None]:
        make = self._put_writes(config, writes, task_id, task_path)
        return self._acall(make, Call(after=checkpoint_key(config)))

    def _put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, path: str
    ) -> Make[None]:
        return lambda after: self._op_put_writes(config, writes, task_id, path, after)

    # -- maintenance -------------------------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        """Erase the thread: checkpoints, blobs, writes and its message log."""
        self._call(lambda after: self._op_delete_thread(thread_id, after))

    def adelete_thread(self, thread_id: str) -> Awaitable[None]:
        return self._acall(lambda after: self._op_delete_thread(thread_id, after))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Fork: the target gets every checkpoint, write and message of the source.

        Raises:
            ValueError: the target already has checkpoints.
        """
        self._call(self._copy(source_thread_id, target_thread_id), Call(repeatable=False))

    def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> Awaitable[None]:
        return self._acall(self._copy(source_thread_id, target_thread_id), Call(repeatable=False))

    def _copy(self, source: str, target: str) -> Make[None]:
        return lambda after: self._op_copy_thread(source, target, after)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """`keep_latest`: keep each namespace's newest checkpoint; `delete`: erase the threads.

        One transaction per thread, so a long list does not hold many locks at once.
        """
        for make in self._prune_steps(thread_ids, strategy):
            self._call(make)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        for make in self._prune_steps(thread_ids, strategy):
            await self._acall(make)

    def _prune_steps(self, thread_ids: Sequence[str], strategy: str) -> list[Make[None]]:
        """One operation per thread (checked before any runs)."""
        ids = check_prune_arguments(thread_ids, strategy)
        if strategy == "delete":
            return [lambda after, t=t: self._op_delete_thread(t, after) for t in ids]
        return [lambda after, t=t: self._op_prune_keep_latest(t, after) for t in ids]

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) that these runs created."""
        if run_ids := [str(r) for r in run_ids]:
            self._call(lambda after: self._op_delete_for_runs(run_ids, after))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        if run_ids := [str(r) for r in run_ids]:
            await self._acall(lambda after: self._op_delete_for_runs(run_ids, after))
