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

import json
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
from lakebase_memory.memory.saver.cache import DEFAULT_MAX_THREADS, MessageCache, ThreadLog
from lakebase_memory.memory.saver.codec import (
    MESSAGE_REF,
    MESSAGES_REF,
    REF_TYPES,
    MessageKey,
    copy_message,
    decode_ref,
    identical_message,
    inline_ref,
    inline_ref_seqs,
    is_inline,
    is_message_list,
    message_key,
    next_version,
    runs_to_seqs,
    same_message,
)
from lakebase_memory.memory.saver.message_codec import COMPACT, decode_message, encode_message
from lakebase_memory.memory.thread_locks import LOCK_THREADS, lock_threads_params

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


class BaseLinearSaver(BaseCheckpointSaver[str]):
    """The logic shared by `LinearPostgresSaver` and `AsyncLinearPostgresSaver`.

    Each `_op_*` method returns an operation for a driver; `after` collects what to do to the
    cache once the operation's transaction has committed.

    Every operation but a copy may run twice (the drivers run it again when the server drops
    the connection, possibly after it committed): a repeated write finds its log entries by
    message id and its checkpoint by id, deletes find nothing more to delete, and a turn
    lease is taken under an id made outside the operation. Only a thread's `size_bytes` may
    then count one write twice, and a message without an id be logged twice (the second
    entry unreferenced), until the next prune.
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
        shared = bool(config["configurable"].get(READ_ONLY_KEY))
        tuples = yield from self._op_read(sql.SELECT_CHECKPOINTS + where, params, shared=shared)
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

    def _op_read(
        self, query: str, params: Sequence[Any], *, shared: bool = False
    ) -> Op[list[CheckpointTuple]]:
        """Checkpoint tuples of the rows `query` selects; their messages are copies unless
        `shared` (a read-only caller, see `read_only`)."""
        for _ in range(READ_ATTEMPTS):
            rows = yield Query(query, params, fetch=True)
            messages = yield from self._op_resolve(rows)
            if messages is not None:
                for row in rows:
                    if row["generation"] is not None:
                        self.cache.note_next_seq(
                            row["thread_id"], row["generation"], row["next_seq"]
                        )
                return [self._load_tuple(row, messages, shared) for row in rows]
        raise MessageLogError(
            f"checkpoints of thread(s) {sorted({r['thread_id'] for r in rows})} refer to "
            "message log entries that do not exist (ai_chatbot.checkpoint_messages); "
            "the log was changed outside the saver"
        )

    def _op_resolve(self, rows: list[Row]) -> Op[Resolved | None]:
        """The log entries the rows refer to, per thread, from the cache or the database;
        None if some are gone. A thread whose entries are all cached costs no copy."""
        wanted: dict[str, set[int]] = {}
        for row in rows:
            refs = [(t, b) for _, t, b in _blob_triples(row["channel_values"])]
            refs += [(t, b) for _, _, t, b, _, _ in _write_rows(row["pending_writes"])]
            for type_, blob in refs:
                if type_ in REF_TYPES:
                    wanted.setdefault(row["thread_id"], set()).update(decode_ref(blob))
            for value in (row["checkpoint"].get("channel_values") or {}).values():
                if (seqs := inline_ref_seqs(value)) is not None:
                    wanted.setdefault(row["thread_id"], set()).update(seqs)
        if not wanted:
            return {}
        generations = {row["thread_id"]: row["generation"] for row in rows}
        found: dict[str, Mapping[int, BaseMessage]] = {}
        missing: list[tuple[str, int]] = []
        for thread_id, seqs in wanted.items():
            log = self.cache.get(thread_id, generations[thread_id])
            cached = log.by_seq if log is not None else {}
            if seqs <= cached.keys():
                found[thread_id] = cached
                continue
            found[thread_id] = {seq: cached[seq] for seq in seqs if seq in cached}
            missing += [(thread_id, seq) for seq in seqs if seq not in cached]
        if missing:
            fetched = yield Query(
                sql.SELECT_LOG_ENTRIES,
                (
                    [t for t, _ in missing],
                    [s for _, s in missing],
                    [generations[t] for t, _ in missing],
                ),
                fetch=True,
            )
            if len(fetched) < len(missing):
                return None
            by_thread: dict[str, dict[int, BaseMessage]] = {}
            for entry in fetched:
                by_thread.setdefault(entry["thread_id"], {})[entry["seq"]] = self._load_entry(entry)
            for thread_id, entries in by_thread.items():
                found[thread_id] = {**found[thread_id], **entries}
                # Committed rows, read with their generation: safe to cache right away.
                if (generation := generations[thread_id]) is not None:
                    self.cache.remember(thread_id, generation, entries)
        return found

    def _load_tuple(self, row: Row, resolved: Resolved, shared: bool = False) -> CheckpointTuple:
        thread_id = row["thread_id"]
        messages = resolved.get(thread_id, {})
        if shared:
            # A message without an id may still get one assigned (`add_messages` does).
            return self._tuple_of(
                row, lambda seq: m if (m := messages[seq]).id is not None else copy_message(m)
            )
        # Copies: a caller editing a message must not change the cached snapshot. Entries of
        # one generation never change, so the cache's copy of a number is this entry's.
        log = self.cache.get(thread_id, row["generation"])

        def copy(seq: int) -> BaseMessage:
            if log is not None and seq in log.by_seq:
                return log.copy(seq)
            return copy_message(messages[seq])

        return self._tuple_of(row, copy)

    def _tuple_of(self, row: Row, message_of: Callable[[int], BaseMessage]) -> CheckpointTuple:
        """The checkpoint tuple of a row, with `message_of(seq)` for each referenced entry."""

        def load(type_: str, blob: bytes) -> Any:
            if type_ == MESSAGES_REF:
                return [message_of(s) for s in decode_ref(blob)]
            if type_ == MESSAGE_REF:
                return message_of(decode_ref(blob)[0])
            return self.serde.loads_typed((type_, blob))

        checkpoint = row["checkpoint"]
        values = dict(checkpoint.get("channel_values") or {})
        for channel, value in values.items():
            if (seqs := inline_ref_seqs(value)) is not None:
                values[channel] = [message_of(s) for s in seqs]
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
            "thread_id": row["thread_id"],
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
        # Primitives stay in the checkpoint's JSON, as in the stock saver, and so do message
        # lists, as references (every list of the checkpoint, changed or not: there is no
        # blob row to find an unchanged one by version). Other values are blobs, written only
        # for the channels this checkpoint changed (`new_versions`), serialized once even
        # when the write has to start again under the lock.
        values = checkpoint["channel_values"]
        inline = {k: v for k, v in values.items() if is_inline(v)}
        lists = {k: v for k, v in values.items() if is_message_list(v)}
        plain = {
            k: self.serde.dumps_typed(values[k])
            for k in new_versions
            if k in values and k not in inline and k not in lists
        }
        meta = json.dumps(get_serializable_checkpoint_metadata(config, metadata))
        blob_params = {
            "blob_channel": list(plain),
            "blob_version": [str(new_versions[k]) for k in plain],
            "blob_type": [type_ for type_, _ in plain.values()],
            "blob_blob": [blob for _, blob in plain.values()],
        }
        blob_bytes = sum(len(blob) for _, blob in plain.values())

        def parts(seqs: list[int]) -> SaveParts:
            refs: dict[str, Any] = {}
            offset = 0
            for channel, messages in lists.items():
                refs[channel] = inline_ref(seqs[offset : offset + len(messages)])
                offset += len(messages)
            stored = json.dumps({**checkpoint, "channel_values": {**inline, **refs}})
            return SaveParts(
                params={
                    "checkpoint_ns": checkpoint_ns,
                    "checkpoint_id": checkpoint["id"],
                    "parent_id": configurable.get("checkpoint_id"),
                    "checkpoint": stored,
                    "metadata": meta,
                    **blob_params,
                },
                size=len(stored) + len(meta) + blob_bytes,
                blobs=bool(plain),
                checkpoint=True,
            )

        # The thread's message count, shown in thread lists: the messages of its latest state.
        count = sum(len(v) for v in lists.values()) if checkpoint_ns == "" else None
        messages = [m for v in lists.values() for m in v]
        yield from self._op_save(config, messages, parts, count, after)
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
        # Pending writes are stored as the stock saver stores them, not through the log:
        # LangGraph saves them in the background, a reply's possibly before the checkpoint
        # holding the question, and logging it first would split the thread's references.
        # A write's new messages reach the log with the next checkpoint, in list order.
        configurable = config["configurable"]
        types, blobs = [], []
        for _, value in writes:
            type_, blob = self.serde.dumps_typed(value)
            types.append(type_)
            blobs.append(blob)
        special = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        parts = SaveParts(
            params={
                "checkpoint_ns": configurable.get("checkpoint_ns", ""),
                "checkpoint_id": configurable["checkpoint_id"],
                "task_id": task_id,
                "task_path": task_path,
                "write_idx": [WRITES_IDX_MAP.get(c, idx) for idx, (c, _) in enumerate(writes)],
                "write_channel": [channel for channel, _ in writes],
                "write_type": types,
                "write_blob": blobs,
            },
            size=sum(len(b) for b in blobs),
            writes="replace" if special else "insert",
        )
        yield from self._op_save(config, [], lambda _: parts, None, after)

    def _op_save(
        self,
        config: RunnableConfig,
        messages: Sequence[BaseMessage],
        parts: Callable[[list[int]], SaveParts],
        message_count: int | None,
        after: AfterCommit,
    ) -> Op[None]:
        """Append what is new in `messages` to the log and save `parts` with their numbers.

        Fast path: this process wrote or read the thread last, so its cache knows the log's
        generation and next number; one statement (one round trip, in autocommit its own
        transaction) saves everything if the database agrees. Otherwise, or on a cold cache,
        a transaction locks the thread's row and reads the truth first.
        """
        configurable = config["configurable"]
        thread_id = thread_id_of(config)
        turn = configurable.get(TURN_KEY)
        head = {
            "thread_id": thread_id,
            "turn_id": str(turn) if turn else None,
            "user_id": configurable.get("user_id"),
            "message_count": message_count,
        }
        cached = self.cache.peek(thread_id)
        if not messages:
            # Nothing refers to the log: no expectation to check, even with a cold cache.
            applied = yield self._save_query(head, None, 0, LogPlan([], [], {}, 0), parts)
            if applied[0]["applied"]:
                return
        elif cached is not None and cached.next_seq is not None:
            plan = self._plan_log(thread_id, cached, cached.next_seq, messages, {})
            applied = yield self._save_query(head, cached.generation, cached.next_seq, plan, parts)
            if applied[0]["applied"]:
                after.append(self._remember(thread_id, cached.generation, plan))
                return
        yield BEGIN
        locked = yield Query(
            sql.LOCK_LEASED_THREAD if turn else sql.LOCK_THREAD, (thread_id,), fetch=True
        )
        if turn:
            check_turn(thread_id, str(turn), locked[0] if locked else None)
        generation: uuid.UUID = locked[0]["generation"]
        next_seq: int = locked[0]["next_seq"]
        log = self.cache.get(thread_id, generation)
        candidates: dict[MessageKey, list[tuple[int, BaseMessage]]] = {}
        unknown = {m.id for m in messages if m.id and not _known(log, next_seq, m)}
        if unknown:
            # Messages this process has not seen: a cold cache, another process's writes, or
            # genuinely new ones (then nothing is found, by index).
            rows = yield Query(
                sql.SELECT_LOG_BY_MESSAGE_ID, (thread_id, sorted(unknown)), fetch=True
            )
            for entry in rows:
                message = self._load_entry(entry)
                candidates.setdefault((message.type, entry["message_id"]), []).append(
                    (entry["seq"], message)
                )
        plan = self._plan_log(thread_id, log, next_seq, messages, candidates)
        applied = yield self._save_query(head, generation, next_seq, plan, parts)
        if not applied[0]["applied"]:  # we hold the row's lock: cannot happen
            raise RuntimeError(f"thread '{thread_id}' changed under its lock")
        after.append(self._remember(thread_id, generation, plan))

    def _save_query(
        self,
        head: dict[str, Any],
        generation: uuid.UUID | None,
        expected_seq: int,
        plan: LogPlan,
        parts: Callable[[list[int]], SaveParts],
    ) -> Query:
        built = parts(plan.seqs)
        # Only what the write depends on is checked: appending needs the log's next number
        # as expected, a reference needs the log's generation (no entry deleted since);
        # plain writes need neither, so they never retry because of a concurrent append.
        params = {
            **head,
            **built.params,
            "generation": generation if plan.seqs or plan.appended else None,
            "expected_seq": expected_seq if plan.appended else None,
            "next_seq": plan.next_seq,
            "size": built.size + sum(len(blob) for _, _, _, blob in plan.appended),
        }
        if plan.appended:
            params["log_seq"] = [seq for seq, _, _, _ in plan.appended]
            params["log_id"] = [message_id for _, message_id, _, _ in plan.appended]
            params["log_type"] = [type_ for _, _, type_, _ in plan.appended]
            params["log_blob"] = [blob for _, _, _, blob in plan.appended]
        statement = sql.save_statement(
            log=bool(plan.appended),
            blobs=built.blobs,
            checkpoint=built.checkpoint,
            writes=built.writes,
        )
        return Query(statement, params, fetch=True)

    def _remember(self, thread_id: str, generation: uuid.UUID, plan: LogPlan) -> Callable[[], None]:
        return lambda: self.cache.remember(
            thread_id, generation, plan.learned, next_seq=plan.next_seq
        )

    def _dump_entry(self, message: BaseMessage) -> tuple[str, bytes, BaseMessage]:
        """(type, blob) of a log entry for `message`, and what the cache keeps of it: the
        message as read back, or a copy of `message` when the serializer does not round-trip
        it exactly (later writes are compared with the message as given, or each one would
        append it again)."""
        if (blob := encode_message(message)) is not None:
            snapshot = decode_message(blob, message.id)
            if identical_message(snapshot, message):
                return COMPACT, blob, snapshot
        type_, blob = self.serde.dumps_typed(message)
        snapshot = self.serde.loads_typed((type_, blob))
        return (
            type_,
            blob,
            snapshot if identical_message(snapshot, message) else copy_message(message),
        )

    def _load_entry(self, entry: Row) -> BaseMessage:
        if entry["type"] == COMPACT:
            return decode_message(entry["blob"], entry["message_id"])
        message: BaseMessage = self.serde.loads_typed((entry["type"], entry["blob"]))
        return message

    def _plan_log(
        self,
        thread_id: str,
        log: ThreadLog | None,
        next_seq: int,
        messages: Sequence[BaseMessage],
        candidates: Mapping[MessageKey, list[tuple[int, BaseMessage]]],
    ) -> LogPlan:
        """The log sequence number of each message, numbering the new ones from `next_seq`.

        A message is *not* new when an entry of the thread with the same type and id holds an
        equal message (pydantic equality: content, tool calls, metadata...), found in the
        cache or among `candidates` read from the database. Otherwise, be it new, edited or
        its id unknown, it is appended: correctness never depends on ids.
        """
        seqs: list[int] = []
        learned: dict[int, BaseMessage] = {}
        appended: list[tuple[int, str | None, str, bytes]] = []
        fresh: dict[int, int] = {}  # id(message) -> seq, so one object is appended once
        for m in messages:
            seq = _cached_seq(log, next_seq, m)
            if seq is None and (key := message_key(m)) is not None:
                for found, stored in sorted(candidates.get(key, []), reverse=True):
                    if same_message(stored, m):
                        seq, learned[found] = found, stored
                        break
            if seq is None and id(m) in fresh:
                seq = fresh[id(m)]
            if seq is None:
                type_, blob, snapshot = self._dump_entry(m)
                seq = fresh[id(m)] = next_seq
                learned[seq] = snapshot
                appended.append((seq, m.id, type_, blob))
                next_seq += 1
            seqs.append(seq)
        return LogPlan(seqs, appended, learned, next_seq)

    # -- turn leases -------------------------------------------------------------------------

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


def _cached_seq(log: ThreadLog | None, next_seq: int, message: BaseMessage) -> int | None:
    key = message_key(message)
    if log is None or key is None:
        return None
    seq = log.by_key.get(key)
    if seq is not None and seq < next_seq and same_message(log.by_seq[seq], message):
        return seq
    return None


def _known(log: ThreadLog | None, next_seq: int, message: BaseMessage) -> bool:
    return _cached_seq(log, next_seq, message) is not None


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
