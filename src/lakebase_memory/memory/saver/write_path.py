"""Writing checkpoints and pending writes: new messages appended to the thread's log, the
rest in one statement (see `sql.save_statement`), with the locked path when the cache is cold
or stale."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    get_serializable_checkpoint_metadata,
)

from lakebase_memory.memory.saver import sql
from lakebase_memory.memory.saver.cache import ThreadLog
from lakebase_memory.memory.saver.codec import (
    MessageKey,
    copy_message,
    identical_message,
    inline_ref,
    is_inline,
    is_message_list,
    message_key,
    same_message,
)
from lakebase_memory.memory.saver.message_codec import COMPACT, decode_message, encode_message
from lakebase_memory.memory.saver.protocol import (
    BEGIN,
    TURN_KEY,
    AfterCommit,
    LogPlan,
    Op,
    Query,
    SaveParts,
    SaverCore,
    check_turn,
    thread_id_of,
)


class WritePath(SaverCore):
    """The write operations of the linear saver."""

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
