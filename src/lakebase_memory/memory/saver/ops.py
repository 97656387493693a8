"""Everything the linear savers do, written once, without I/O.

Each operation is a generator that yields `Query`s and receives their rows; `sync.py` and
`aio.py` only run those queries on a connection (each operation in one transaction when it
writes) and apply the cache updates an operation queued once its transaction committed. So
the two savers cannot drift apart: they share every decision.

Storage (see `lakebase_memory.memory.saver` for the overview): checkpoints, blobs and writes
are the stock tables and formats, except that a list of messages is stored in the thread's
append-only log (`ai_chatbot.checkpoint_messages`) and the blob or write holds only the
sequence numbers of its messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from psycopg.types.json import Jsonb

from lakebase_memory.memory.saver import sql
from lakebase_memory.memory.saver.cache import DEFAULT_MAX_THREADS, MessageCache
from lakebase_memory.memory.saver.codec import (
    MESSAGE_REF,
    MESSAGES_REF,
    REF_TYPES,
    decode_ref,
    encode_ref,
    is_inline,
    is_message_list,
    loggable_write,
    message_key,
    next_version,
)

T = TypeVar("T")
Row = dict[str, Any]
AfterCommit = list[Callable[[], None]]

PRUNE_STRATEGIES = ("keep_latest", "delete")
# A read that finds a referenced log entry missing (deleted between its two queries by a
# concurrent prune) starts again; more misses than this mean the log is damaged.
READ_ATTEMPTS = 3


class MessageLogError(RuntimeError):
    """A checkpoint refers to log entries that are not in the database."""


@dataclass(frozen=True)
class Query:
    """One statement for a driver to run. `many`: `params` is a list of parameter rows."""

    sql: str
    params: Sequence[Any] | None = None
    fetch: bool = False
    many: bool = False


Op = Generator[Query, list[Row], T]


def thread_id_of(config: RunnableConfig) -> str:
    try:
        return str(config["configurable"]["thread_id"])
    except KeyError:
        raise ValueError(
            "the config has no thread_id: pass {'configurable': {'thread_id': ...}}"
        ) from None


class BaseLinearSaver(BaseCheckpointSaver[str]):
    """The logic shared by `LinearPostgresSaver` and `AsyncLinearPostgresSaver`.

    Each `_op_*` method returns an operation for a driver; `after` collects what to do to the
    cache once the operation's transaction has committed.
    """

    def __init__(
        self, *, serde: SerializerProtocol | None = None, cache_threads: int = DEFAULT_MAX_THREADS
    ) -> None:
        super().__init__(serde=serde)
        self.cache = MessageCache(cache_threads)

    def get_next_version(self, current: str | None, channel: None) -> str:  # type: ignore[override]
        return next_version(current)

    # -- reading ---------------------------------------------------------------------------

    def _op_get_tuple(self, config: RunnableConfig) -> Op[CheckpointTuple | None]:
        thread_id = thread_id_of(config)
        checkpoint_ns = config["configurable"].get("checkpoint_ns", "")
        if checkpoint_id := get_checkpoint_id(config):
            where = "WHERE c.thread_id = %s AND c.checkpoint_ns = %s AND c.checkpoint_id = %s"
            params: list[Any] = [thread_id, checkpoint_ns, checkpoint_id]
        else:
            # The primary key's order: the latest checkpoint costs the same at any length.
            where = (
                "WHERE c.thread_id = %s AND c.checkpoint_ns = %s "
                "ORDER BY c.checkpoint_id DESC LIMIT 1"
            )
            params = [thread_id, checkpoint_ns]
        tuples = yield from self._op_read(sql.SELECT_CHECKPOINTS + where, params)
        return tuples[0] if tuples else None

    def _op_list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Op[list[CheckpointTuple]]:
        wheres: list[str] = []
        params: list[Any] = []
        if config:
            wheres.append("c.thread_id = %s")
            params.append(thread_id_of(config))
            checkpoint_ns = config["configurable"].get("checkpoint_ns")
            if checkpoint_ns is not None:
                wheres.append("c.checkpoint_ns = %s")
                params.append(checkpoint_ns)
            if checkpoint_id := get_checkpoint_id(config):
                wheres.append("c.checkpoint_id = %s")
                params.append(checkpoint_id)
        if filter:
            wheres.append("c.metadata @> %s")
            params.append(Jsonb(filter))
        if before is not None:
            wheres.append("c.checkpoint_id < %s")
            params.append(get_checkpoint_id(before))
        query = sql.SELECT_CHECKPOINTS
        if wheres:
            query += "WHERE " + " AND ".join(wheres)
        query += " ORDER BY c.checkpoint_id DESC"
        if limit is not None:
            query += " LIMIT %s"
            params.append(int(limit))
        return (yield from self._op_read(query, params))

    def _op_read(self, query: str, params: Sequence[Any]) -> Op[list[CheckpointTuple]]:
        for _ in range(READ_ATTEMPTS):
            rows = yield Query(query, params, fetch=True)
            messages = yield from self._op_resolve(rows)
            if messages is not None:
                return [self._load_tuple(row, messages) for row in rows]
        raise MessageLogError(
            f"checkpoints of thread(s) {sorted({r['thread_id'] for r in rows})} refer to "
            "message log entries that do not exist (ai_chatbot.checkpoint_messages); "
            "the log was changed outside the saver"
        )

    def _op_resolve(self, rows: list[Row]) -> Op[dict[tuple[str, int], BaseMessage] | None]:
        """The log entries the rows refer to, from the cache or the database; None if gone."""
        wanted: dict[str, set[int]] = {}
        for row in rows:
            refs = [(t, b) for _, t, b in _blob_triples(row["channel_values"])]
            refs += [(t, b) for _, _, t, b, _, _ in _write_rows(row["pending_writes"])]
            for type_, blob in refs:
                if type_ in REF_TYPES:
                    wanted.setdefault(row["thread_id"], set()).update(decode_ref(blob))
        if not wanted:
            return {}
        generations = {row["thread_id"]: row["generation"] for row in rows}
        found: dict[tuple[str, int], BaseMessage] = {}
        missing: list[tuple[str, int]] = []
        for thread_id, seqs in wanted.items():
            log = self.cache.get(thread_id, generations[thread_id])
            for seq in seqs:
                if log is not None and seq in log.by_seq:
                    found[(thread_id, seq)] = log.by_seq[seq]
                else:
                    missing.append((thread_id, seq))
        if missing:
            fetched = yield Query(
                sql.SELECT_LOG_ENTRIES,
                ([t for t, _ in missing], [s for _, s in missing]),
                fetch=True,
            )
            by_thread: dict[str, dict[int, BaseMessage]] = {}
            for entry in fetched:
                message = self.serde.loads_typed((entry["type"], entry["blob"]))
                found[(entry["thread_id"], entry["seq"])] = message
                by_thread.setdefault(entry["thread_id"], {})[entry["seq"]] = message
            if len(fetched) < len(missing):
                return None
            # Committed rows, read with their generation: safe to cache right away.
            for thread_id, entries in by_thread.items():
                if (generation := generations[thread_id]) is not None:
                    self.cache.remember(thread_id, generation, entries)
        return found

    def _load_tuple(
        self, row: Row, messages: Mapping[tuple[str, int], BaseMessage]
    ) -> CheckpointTuple:
        thread_id = row["thread_id"]

        def load(type_: str, blob: bytes) -> Any:
            if type_ == MESSAGES_REF:
                # Copies: a caller reassigning a field must not change the cached snapshot.
                return [messages[(thread_id, s)].model_copy() for s in decode_ref(blob)]
            if type_ == MESSAGE_REF:
                return messages[(thread_id, decode_ref(blob)[0])].model_copy()
            return self.serde.loads_typed((type_, blob))

        checkpoint = row["checkpoint"]
        values = dict(checkpoint.get("channel_values") or {})
        for channel, type_, blob in _blob_triples(row["channel_values"]):
            if type_ != "empty":
                values[channel] = load(type_, blob)
        writes: list[PendingWrite] = [
            (task_id, channel, load(type_, blob))
            for task_id, channel, type_, blob, _, _ in sorted(
                _write_rows(row["pending_writes"]),
                key=lambda w: writes_sort_key(w[4], w[0], w[5]),
            )
        ]
        configurable = {
            "thread_id": thread_id,
            "checkpoint_ns": row["checkpoint_ns"],
            "checkpoint_id": row["checkpoint_id"],
        }
        parent = row["parent_checkpoint_id"]
        return CheckpointTuple(
            config={"configurable": configurable},
            checkpoint={**checkpoint, "channel_values": values},
            metadata=row["metadata"],
            parent_config=(
                {"configurable": {**configurable, "checkpoint_id": parent}} if parent else None
            ),
            pending_writes=writes,
        )

    # -- writing ---------------------------------------------------------------------------

    def _op_put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
        after: AfterCommit,
    ) -> Op[RunnableConfig]:
        configurable = config["configurable"]
        thread_id = thread_id_of(config)
        checkpoint_ns = configurable.get("checkpoint_ns", "")
        parent_id = configurable.get("checkpoint_id")
        # Primitives stay in the checkpoint's JSON, as in the stock saver; the rest are blobs,
        # written only for the channels this checkpoint changed (`new_versions`).
        inline = {k: v for k, v in checkpoint["channel_values"].items() if is_inline(v)}
        changed = {
            k: checkpoint["channel_values"][k]
            for k in new_versions
            if k in checkpoint["channel_values"] and k not in inline
        }
        lists = {k: v for k, v in changed.items() if is_message_list(v)}
        # Every writer of the thread takes its lock, also without messages: prune and delete
        # then never see half of a checkpoint.
        seqs = yield from self._op_log(thread_id, [m for v in lists.values() for m in v], after)
        blobs: list[tuple[Any, ...]] = []
        offset = 0
        for channel, value in changed.items():
            version = str(new_versions[channel])
            if channel in lists:
                ref = encode_ref(seqs[offset : offset + len(value)])
                offset += len(value)
                blobs.append((thread_id, checkpoint_ns, channel, version, MESSAGES_REF, ref))
            else:
                blobs.append(
                    (thread_id, checkpoint_ns, channel, version, *self.serde.dumps_typed(value))
                )
        if blobs:
            yield Query(sql.UPSERT_BLOB, blobs, many=True)
        stored = {**checkpoint, "channel_values": inline}
        yield Query(
            sql.UPSERT_CHECKPOINT,
            (
                thread_id,
                checkpoint_ns,
                checkpoint["id"],
                parent_id,
                Jsonb(stored),
                Jsonb(get_serializable_checkpoint_metadata(config, metadata)),
            ),
        )
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": checkpoint_ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def _op_put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
        after: AfterCommit,
    ) -> Op[None]:
        configurable = config["configurable"]
        thread_id = thread_id_of(config)
        checkpoint_ns = configurable.get("checkpoint_ns", "")
        checkpoint_id = configurable["checkpoint_id"]
        logged = [loggable_write(value) for _, value in writes]
        seqs: list[int] = []
        if any(m is not None for m in logged):
            flat = [m for messages in logged if messages is not None for m in messages]
            seqs = yield from self._op_log(thread_id, flat, after)
        rows: list[tuple[Any, ...]] = []
        offset = 0
        for idx, ((channel, value), messages) in enumerate(zip(writes, logged, strict=True)):
            if messages is None:
                type_, blob = self.serde.dumps_typed(value)
            else:
                type_ = MESSAGE_REF if isinstance(value, BaseMessage) else MESSAGES_REF
                blob = encode_ref(seqs[offset : offset + len(messages)])
                offset += len(messages)
            index = WRITES_IDX_MAP.get(channel, idx)
            key = (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, index)
            rows.append((*key, channel, type_, blob))
        special = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        yield Query(sql.UPSERT_WRITE if special else sql.INSERT_WRITE, rows, many=True)

    def _op_log(
        self, thread_id: str, messages: Sequence[BaseMessage], after: AfterCommit
    ) -> Op[list[int]]:
        """Lock the thread; the log sequence number of each message, appending the new ones.

        A message is *not* new when an entry of the thread with the same type and id holds an
        equal message (pydantic equality: content, tool calls, metadata...). Otherwise, be it
        new, edited or its id unknown, it is appended: correctness never depends on ids.
        """
        head = (yield Query(sql.LOCK_THREAD, (thread_id,), fetch=True))[0]
        generation: uuid.UUID = head["generation"]
        next_seq: int = head["next_seq"]
        log = self.cache.get(thread_id, generation)
        seqs: list[int | None] = [None] * len(messages)
        for i, m in enumerate(messages):
            key = message_key(m)
            seq = log.by_key.get(key) if log is not None and key is not None else None
            if seq is not None and seq < next_seq and log is not None and log.by_seq[seq] == m:
                seqs[i] = seq
        learned: dict[int, BaseMessage] = {}
        unknown = list(dict.fromkeys(m.id for i, m in enumerate(messages) if seqs[i] is None))
        if ids := [i for i in unknown if i]:
            # Messages this process has not seen: a cold cache, another process's writes, or
            # genuinely new ones (then nothing is found, by index).
            candidates: dict[tuple[str, str], list[tuple[int, BaseMessage]]] = {}
            for entry in (yield Query(sql.SELECT_LOG_BY_MESSAGE_ID, (thread_id, ids), True)):
                message = self.serde.loads_typed((entry["type"], entry["blob"]))
                candidates.setdefault((message.type, entry["message_id"]), []).append(
                    (entry["seq"], message)
                )
            for i, m in enumerate(messages):
                key = message_key(m)
                if seqs[i] is None and key is not None:
                    for seq, stored in sorted(candidates.get(key, []), reverse=True):
                        if stored == m:
                            seqs[i], learned[seq] = seq, stored
                            break
        appended: list[tuple[Any, ...]] = []
        fresh: dict[int, int] = {}  # id(message) -> seq, so one object is appended once
        for i, m in enumerate(messages):
            if seqs[i] is not None:
                continue
            if id(m) in fresh:
                seqs[i] = fresh[id(m)]
                continue
            type_, blob = self.serde.dumps_typed(m)
            snapshot = self.serde.loads_typed((type_, blob))
            if snapshot != m:
                # A value the serializer does not round-trip exactly: compare later writes
                # with the message as given, or each checkpoint would append it again.
                snapshot = m.model_copy()
            seqs[i] = fresh[id(m)] = next_seq
            learned[next_seq] = snapshot
            appended.append((thread_id, next_seq, m.id, type_, blob))
            next_seq += 1
        if appended:
            yield Query(sql.INSERT_LOG_ENTRY, appended, many=True)
            yield Query(sql.ADVANCE_THREAD, (next_seq, thread_id))
        if learned:
            after.append(lambda: self.cache.remember(thread_id, generation, learned))
        return [s for s in seqs if s is not None]

    # -- maintenance -----------------------------------------------------------------------

    def _op_delete_thread(self, thread_id: str, after: AfterCommit) -> Op[None]:
        for statement in sql.DELETE_THREAD:
            yield Query(statement, (str(thread_id),))
        after.append(lambda: self.cache.drop(str(thread_id)))

    def _op_copy_thread(self, source: str, target: str, after: AfterCommit) -> Op[None]:
        source, target = str(source), str(target)
        if source == target:
            raise ValueError(f"cannot copy thread '{source}' onto itself")
        for thread_id in sorted((source, target)):  # one lock order: no deadlock
            yield Query(sql.LOCK_THREAD, (thread_id,), fetch=True)
        taken = yield Query(sql.THREAD_HAS_DATA, (target, target), fetch=True)
        if taken[0]["taken"]:
            raise ValueError(
                f"cannot copy thread '{source}' to '{target}': '{target}' already has "
                "checkpoints; delete it first or choose a new thread id"
            )
        for statement in sql.COPY_THREAD:
            yield Query(statement, (target, source))
        yield Query(sql.CONTINUE_NUMBERING, (target, source))
        after.append(lambda: self.cache.drop(target))

    def _op_prune_keep_latest(self, thread_id: str, after: AfterCommit) -> Op[None]:
        """Keep the newest checkpoint of each namespace, its writes, blobs and messages."""
        yield Query(sql.LOCK_EXISTING_THREAD, (thread_id,), fetch=True)
        deleted = yield Query(sql.PRUNE_OLDER_CHECKPOINTS, (thread_id, thread_id), fetch=True)
        if deleted:
            yield from self._op_collect_garbage(thread_id, deleted, after)

    def _op_delete_for_runs(self, run_ids: Sequence[str], after: AfterCommit) -> Op[None]:
        rows = yield Query(sql.THREADS_OF_RUNS, (list(run_ids),), fetch=True)
        threads = sorted({r["thread_id"] for r in rows})
        for thread_id in threads:
            yield Query(sql.LOCK_EXISTING_THREAD, (thread_id,), fetch=True)
        deleted = yield Query(sql.DELETE_RUN_CHECKPOINTS, (threads, list(run_ids)), fetch=True)
        by_thread: dict[str, list[Row]] = {}
        for row in deleted:
            by_thread.setdefault(row["thread_id"], []).append(row)
        for thread_id, gone in by_thread.items():
            yield from self._op_collect_garbage(thread_id, gone, after)

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
        kept = sorted({seq for r in refs for seq in decode_ref(r["blob"])})
        yield Query(sql.DELETE_UNREFERENCED_LOG, (thread_id, kept))
        # Caches everywhere may hold deleted entries: a new generation makes them start over.
        yield Query(sql.NEW_GENERATION, (thread_id,))
        after.append(lambda: self.cache.drop(thread_id))


def check_prune_arguments(thread_ids: Sequence[str], strategy: str) -> list[str]:
    """The thread ids as strings; raises on a bare string or an unknown strategy."""
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread ids, not a str")
    if strategy not in PRUNE_STRATEGIES:
        raise ValueError(
            f"unknown prune strategy {strategy!r}: use one of {', '.join(PRUNE_STRATEGIES)}"
        )
    return [str(t) for t in thread_ids]


def _blob_triples(values: list[list[bytes]] | None) -> list[tuple[str, str, bytes]]:
    return [(c.decode(), t.decode(), b) for c, t, b in values or []]


def _write_rows(
    writes: list[list[bytes]] | None,
) -> list[tuple[str, str, str, bytes, str, int]]:
    """(task_id, channel, type, blob, task_path, idx) of each pending write row."""
    return [
        (tid.decode(), ch.decode(), t.decode(), b, path.decode(), int(idx))
        for tid, ch, t, b, path, idx in writes or []
    ]
