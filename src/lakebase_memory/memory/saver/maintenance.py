"""Turn leases (one turn at a time per thread) and maintenance: delete, copy and prune
threads, delete runs, and collect what deleted checkpoints leave unreferenced."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lakebase_memory.memory.saver import sql
from lakebase_memory.memory.saver.codec import (
    REF_TYPES,
    decode_ref,
    runs_to_seqs,
)
from lakebase_memory.memory.saver.protocol import (
    BEGIN,
    AfterCommit,
    Op,
    Query,
    Row,
    SaverCore,
    ThreadBusyError,
)
from lakebase_memory.memory.thread_locks import LOCK_THREADS, lock_threads_params


class Maintenance(SaverCore):
    """Leases and maintenance operations of the linear saver."""

    def _op_acquire_turn(
        self, thread_id: str, user_id: str | None, lease_seconds: float, turn_id: str
    ) -> Op[str]:
        """Take the lease for `turn_id` (made by the caller, so that a run repeated after a
        dropped connection finds the lease its first run may have taken, not a busy thread)."""
        params = {
            "thread_id": str(thread_id),
            "user_id": user_id,
            "turn_id": turn_id,
            "seconds": float(lease_seconds),
        }
        if (yield Query(sql.ACQUIRE_TURN, params, fetch=True)):
            return turn_id
        holder = yield Query(sql.TURN_HOLDER, (str(thread_id),), fetch=True)
        raise ThreadBusyError(str(thread_id), holder[0]["seconds_left"] if holder else None)

    def _op_renew_turn(self, thread_id: str, turn_id: str, lease_seconds: float) -> Op[bool]:
        params = {"thread_id": str(thread_id), "turn_id": turn_id, "seconds": lease_seconds}
        return bool((yield Query(sql.RENEW_TURN, params, fetch=True)))

    def _op_release_turn(self, thread_id: str, turn_id: str) -> Op[None]:
        yield Query(sql.RELEASE_TURN, {"thread_id": str(thread_id), "turn_id": turn_id})

    # -- maintenance -----------------------------------------------------------------------

    def _op_lock_threads(self, thread_ids: Iterable[str]) -> Op[list[str]]:
        """Lock the head rows of these threads before any other row, in the one order of all
        maintenance (`thread_locks.LOCK_THREADS`: one statement, ids in byte order), so that
        two maintenance operations on overlapping threads queue instead of deadlocking.

        Missing head rows are created, so a first linear write waits for this transaction
        too; returns their threads, for `_op_drop_empty_heads` once the work is done.
        """
        created = yield Query(LOCK_THREADS, lock_threads_params(thread_ids), fetch=True)
        return [r["thread_id"] for r in created]

    def _op_drop_empty_heads(self, created: list[str]) -> Op[None]:
        """At the end of maintenance, still under its locks: the head rows it created go again
        for threads left without checkpoints (unknown ones, deleted meanwhile, or emptied)."""
        if created:
            yield Query(sql.DROP_EMPTY_HEADS, (created,))

    def _op_delete_thread(self, thread_id: str, after: AfterCommit) -> Op[None]:
        yield BEGIN
        # The head row goes with the thread, also one the lock created.
        yield from self._op_lock_threads([str(thread_id)])
        for statement in sql.DELETE_THREAD:
            yield Query(statement, (str(thread_id),))
        after.append(lambda: self.cache.drop(str(thread_id)))

    def _op_copy_thread(self, source: str, target: str, after: AfterCommit) -> Op[None]:
        source, target = str(source), str(target)
        if source == target:
            raise ValueError(f"cannot copy thread '{source}' onto itself")
        yield BEGIN
        created = yield from self._op_lock_threads((source, target))
        taken = yield Query(sql.THREAD_HAS_DATA, (target, target), fetch=True)
        if taken[0]["taken"]:
            raise ValueError(
                f"cannot copy thread '{source}' to '{target}': '{target}' already has "
                "checkpoints; delete it first or choose a new thread id"
            )
        for statement in sql.COPY_THREAD:
            yield Query(statement, (target, source))
        # The target's head continues the source's numbering; an unknown source copies
        # nothing, and neither thread keeps a head row then.
        yield Query(sql.CONTINUE_NUMBERING, (target, source))
        yield from self._op_drop_empty_heads(created)
        after.append(lambda: self.cache.drop(target))

    def _op_prune_keep_latest(self, thread_id: str, after: AfterCommit) -> Op[None]:
        """Keep the newest checkpoint of each namespace, its writes, blobs and messages."""
        yield BEGIN
        created = yield from self._op_lock_threads([thread_id])
        deleted = yield Query(sql.PRUNE_OLDER_CHECKPOINTS, (thread_id, thread_id), fetch=True)
        if deleted:
            yield from self._op_collect_garbage(thread_id, deleted, after)
        yield from self._op_drop_empty_heads(created)

    def _op_delete_for_runs(self, run_ids: Sequence[str], after: AfterCommit) -> Op[None]:
        yield BEGIN
        rows = yield Query(sql.THREADS_OF_RUNS, (list(run_ids),), fetch=True)
        threads = [r["thread_id"] for r in rows]
        if not threads:
            return
        # Every thread's head row first, then `= ANY` may visit their rows in any order.
        created = yield from self._op_lock_threads(threads)
        deleted = yield Query(sql.DELETE_RUN_CHECKPOINTS, (threads, list(run_ids)), fetch=True)
        by_thread: dict[str, list[Row]] = {}
        for row in deleted:
            by_thread.setdefault(row["thread_id"], []).append(row)
        for thread_id, gone in by_thread.items():
            yield from self._op_collect_garbage(thread_id, gone, after)
        yield from self._op_drop_empty_heads(created)

    def _op_collect_garbage(
        self, thread_id: str, deleted: Iterable[Row], after: AfterCommit
    ) -> Op[None]:
        """After checkpoints were deleted: their writes, then unreferenced blobs and messages."""
        gone = list(deleted)
        yield Query(
            sql.DELETE_WRITES_OF,
            ([r["checkpoint_ns"] for r in gone], [r["checkpoint_id"] for r in gone], thread_id),
        )
        yield Query(sql.DETACH_ORPHANS, (thread_id,))
        yield Query(sql.DELETE_UNREFERENCED_BLOBS, (thread_id, thread_id))
        refs = yield Query(
            sql.SELECT_REFERENCES, (thread_id, list(REF_TYPES), thread_id, list(REF_TYPES)), True
        )
        inline = yield Query(sql.SELECT_INLINE_REFERENCES, (thread_id,), fetch=True)
        kept = sorted(
            {seq for r in refs for seq in decode_ref(r["blob"])}
            | {seq for r in inline for seq in runs_to_seqs(r["runs"])}
        )
        yield Query(sql.DELETE_UNREFERENCED_LOG, (thread_id, kept))
        # Caches everywhere may hold deleted entries: a new generation makes them start over.
        yield Query(sql.RECOUNT_THREAD, {"thread_id": thread_id})
        after.append(lambda: self.cache.drop(thread_id))
