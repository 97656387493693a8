"""Reading checkpoints: the latest or a named one, listings, and the message log entries
their references resolve to (from the cache or the database)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    writes_sort_key,
)
from psycopg.types.json import Jsonb

from lakebase_memory.memory.saver import sql
from lakebase_memory.memory.saver.codec import (
    MESSAGE_REF,
    MESSAGES_REF,
    REF_TYPES,
    copy_message,
    decode_ref,
    inline_ref_seqs,
)
from lakebase_memory.memory.saver.protocol import (
    READ_ATTEMPTS,
    READ_ONLY_KEY,
    MessageLogError,
    Op,
    Query,
    Resolved,
    Row,
    SaverCore,
    thread_id_of,
)


class ReadPath(SaverCore):
    """The read operations of the linear saver."""

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
