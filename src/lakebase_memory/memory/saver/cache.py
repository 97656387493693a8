"""The in-process cache of decoded log entries, which makes a checkpoint O(new messages).

Without it, saving a checkpoint would mean comparing the whole message list with the stored
one (reading it back) and reading the latest state would mean decoding every message again.
The cache is an optimisation only; the database stays the truth:

- an entry is tagged with its thread's log *generation*; every deletion of log entries (prune,
  delete, delete_for_runs) gives the thread a new generation, and writers check it under the
  thread's lock, so a cache never makes a checkpoint name a deleted entry;
- entries are added only after the transaction that wrote them committed;
- the cached messages are private snapshots (decoded from the stored bytes); callers get
  copies, so reassigning a field of a returned message never changes what is cached, except
  a read flagged `read_only` (see `ops.read_only`), whose caller promises not to change them.

No lock: each operation is a few dict reads and writes, which the GIL keeps whole, and a
lost update costs at most one extra lookup, never a wrong answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage

from lakebase_memory.memory.saver.codec import MessageCopier, MessageKey, message_key

DEFAULT_MAX_THREADS = 256


@dataclass
class ThreadLog:
    """What this process knows of one thread's log, valid for one generation."""

    generation: uuid.UUID
    by_seq: dict[int, BaseMessage] = field(default_factory=dict)
    # Reads hand out copies: each entry's copier is made at its first copy, then kept.
    copiers: dict[int, MessageCopier] = field(default_factory=dict)
    by_key: dict[MessageKey, int] = field(default_factory=dict)
    # The thread's next sequence number as last seen: a writer's one-statement fast path
    # expects it (the statement checks it, so a stale value only costs a retry).
    next_seq: int | None = None

    def add(self, entries: Mapping[int, BaseMessage]) -> None:
        for seq, message in entries.items():
            self.by_seq[seq] = message
            self.copiers.pop(seq, None)
            key = message_key(message)
            # The newest entry of a message id is the one a new checkpoint most likely repeats.
            if key is not None and seq >= self.by_key.get(key, -1):
                self.by_key[key] = seq

    def copy(self, seq: int) -> BaseMessage:
        """A copy of entry `seq`, as independent as a freshly decoded message."""
        copier = self.copiers.get(seq)
        if copier is None:
            copier = self.copiers[seq] = MessageCopier(self.by_seq[seq])
        return copier()


class MessageCache:
    """Least-recently-used `ThreadLog`s, at most `max_threads` of them."""

    def __init__(self, max_threads: int = DEFAULT_MAX_THREADS) -> None:
        if max_threads < 0:
            raise ValueError(f"max_threads must be >= 0, got {max_threads}")
        self.max_threads = max_threads
        self._threads: dict[str, ThreadLog] = {}

    def get(self, thread_id: str, generation: uuid.UUID | None) -> ThreadLog | None:
        """The thread's entries if they belong to `generation`."""
        log = self._threads.get(thread_id)
        if log is None or generation is None or log.generation != generation:
            return None
        # Re-inserting moves the thread to the most recently used end.
        self._threads.pop(thread_id, None)
        self._threads[thread_id] = log
        return log

    def peek(self, thread_id: str) -> ThreadLog | None:
        """The thread's entries, whatever their generation (a writer checks it in SQL)."""
        log = self._threads.pop(thread_id, None)
        if log is not None:
            self._threads[thread_id] = log
        return log

    def remember(
        self,
        thread_id: str,
        generation: uuid.UUID,
        entries: Mapping[int, BaseMessage],
        *,
        next_seq: int | None = None,
    ) -> None:
        """Add committed entries of `generation`; a cache of another generation is replaced."""
        if self.max_threads == 0:
            return
        log = self._threads.pop(thread_id, None)
        if log is None or log.generation != generation:
            log = ThreadLog(generation)
        log.add(entries)
        if next_seq is not None:
            log.next_seq = max(next_seq, log.next_seq or 0)
        self._threads[thread_id] = log
        while len(self._threads) > self.max_threads:
            oldest = next(iter(self._threads), None)
            if oldest is None:
                break
            self._threads.pop(oldest, None)

    def note_next_seq(self, thread_id: str, generation: uuid.UUID, next_seq: int) -> None:
        """What a read saw, for a thread whose entries of `generation` are cached.

        Never for a thread the cache knows nothing of: the fast path compares new messages
        with cached ones only, so an empty cache would append every message again.
        """
        log = self._threads.get(thread_id)
        if log is not None and log.generation == generation and log.by_seq:
            log.next_seq = max(next_seq, log.next_seq or 0)

    def drop(self, thread_id: str) -> None:
        self._threads.pop(thread_id, None)

    def __len__(self) -> int:
        return len(self._threads)
