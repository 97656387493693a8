"""The one order in which maintenance locks threads, so that two maintenance operations on
overlapping threads queue behind each other instead of deadlocking.

A thread's head row in `ai_chatbot.checkpoint_threads` is the lock every writer of the thread
takes first (the saver's writes and turns, the lifecycle's deletes), so whoever holds it owns
the thread's other rows until commit. The rule:

- a path that locks one thread takes that thread's head row first (a save by its UPDATE or
  INSERT of the row; the saver's `delete_thread` and `prune` through `LOCK_THREADS` too);
- a path that locks several threads (the lifecycle's `delete_thread_rows`, the saver's
  `copy_thread` and `delete_for_runs`) takes the head rows of ALL of them first, in ONE
  statement, `LOCK_THREADS`, in byte order of the id (`COLLATE "C"`), before any other row.

Why one statement ordered by the database: Python's `sorted()` and the database's collation
disagree on case and punctuation (under en_US.UTF-8, 'B' < 'a' in Python, 'a' < 'B' in
PostgreSQL), and a `thread_id = ANY(...)` scan locks rows in whatever order its plan reads
them (a bitmap heap scan: the order the rows happen to lie in the table). Two paths ordering
the same ids differently take each other's first row and wait for each other's second:
PostgreSQL then aborts one of them with `deadlock detected`.

A thread without a head row (only LangGraph's stock saver wrote it, or nothing did) gets one
in the same pass: a concurrent creator of that row waits on its key, so the rule holds for
such threads too. The statement returns the head rows it created; a path that did not mean to
create them removes those of threads with nothing to keep (see the saver's `DROP_EMPTY_HEADS`;
the lifecycle deletes every head row anyway), so maintenance never brings back a thread that a
maintenance operation it waited for had just deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Existing head rows are locked as an UPDATE of them would lock them (FOR NO KEY UPDATE: every
# writer of the row waits) without being written: ON CONFLICT DO UPDATE locks each conflicting
# row even when its WHERE is false, and RETURNING then reports only the rows it inserted.
# Rows are taken in the order the SELECT gives them; DISTINCT: one command cannot take a row
# twice.
LOCK_THREADS = """
INSERT INTO ai_chatbot.checkpoint_threads AS h (thread_id)
SELECT w.thread_id FROM (SELECT DISTINCT unnest(%(thread_ids)s::text[]) AS thread_id) AS w
ORDER BY w.thread_id COLLATE "C"
ON CONFLICT (thread_id) DO UPDATE SET next_seq = h.next_seq WHERE false
RETURNING h.thread_id
"""


def lock_threads_params(thread_ids: Iterable[str]) -> dict[str, Any]:
    """`LOCK_THREADS`'s parameters (the order is the statement's, not this list's)."""
    return {"thread_ids": [str(t) for t in thread_ids]}
