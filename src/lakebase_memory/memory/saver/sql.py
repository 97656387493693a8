"""The SQL of the linear savers, shared by the sync and async classes.

The stock checkpoint tables (`checkpoints`, `checkpoint_blobs`, `checkpoint_writes`) are named
without a schema, like LangGraph's saver does, so they follow the connection's search_path and
are the very tables the stock saver uses. The message log is in `ai_chatbot` (migration
`0002_checkpoint_message_log`). Every statement takes its values as `%s` parameters.
"""

from __future__ import annotations

import functools

from lakebase_memory.schema.app_migrations import MIGRATIONS

# The log tables' DDL is the app migrations', run by `setup()` for library users.
LOG_TABLES_DDL = "\n".join(
    m.sql
    for m in MIGRATIONS
    if m.name in ("0002_checkpoint_message_log", "0003_checkpoint_thread_lifecycle")
)
CREATE_CHAT_SCHEMA = "CREATE SCHEMA IF NOT EXISTS ai_chatbot"

# One checkpoint row with its channel blobs and pending writes, as the stock saver reads them
# (arrays of bytea, read in binary), plus the thread's log generation for the cache.
SELECT_CHECKPOINTS = """
SELECT
    c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id,
    c.checkpoint, c.metadata,
    (
        SELECT array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
        FROM jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
        JOIN checkpoint_blobs bl
            ON bl.thread_id = c.thread_id AND bl.checkpoint_ns = c.checkpoint_ns
            AND bl.channel = v.key AND bl.version = v.value
    ) AS channel_values,
    (
        SELECT array_agg(array[
            cw.task_id::bytea, cw.channel::bytea, cw.type::bytea, cw.blob,
            convert_to(cw.task_path, 'UTF8'), cw.idx::text::bytea
        ])
        FROM checkpoint_writes cw
        WHERE cw.thread_id = c.thread_id AND cw.checkpoint_ns = c.checkpoint_ns
            AND cw.checkpoint_id = c.checkpoint_id
    ) AS pending_writes,
    h.generation,
    h.next_seq
FROM checkpoints c
LEFT JOIN ai_chatbot.checkpoint_threads h ON h.thread_id = c.thread_id
"""

# Entries of the log generation the checkpoints were read with: a thread deleted (or pruned)
# and written again in between numbers its entries anew, and the read starts over. (A thread
# whose head row is gone, e.g. removed by hand, is read as it is.)
SELECT_LOG_ENTRIES = """
SELECT m.thread_id, m.seq, m.message_id, m.type, m.blob
FROM unnest(%s::text[], %s::int[], %s::uuid[]) AS wanted(thread_id, seq, generation)
JOIN ai_chatbot.checkpoint_messages m
    ON m.thread_id = wanted.thread_id AND m.seq = wanted.seq
WHERE wanted.generation IS NULL OR EXISTS (
    SELECT 1 FROM ai_chatbot.checkpoint_threads h
    WHERE h.thread_id = wanted.thread_id AND h.generation = wanted.generation
)
"""

SELECT_LOG_BY_MESSAGE_ID = """
SELECT seq, message_id, type, blob FROM ai_chatbot.checkpoint_messages
WHERE thread_id = %s AND message_id = ANY(%s)
"""

# Creates the thread's head row or locks it: every writer of a thread passes here, so writes
# to one thread are serialised (until commit) while other threads proceed in parallel.
LOCK_THREAD = """
INSERT INTO ai_chatbot.checkpoint_threads AS h (thread_id) VALUES (%s)
ON CONFLICT (thread_id) DO UPDATE SET updated_at = now()
RETURNING h.generation, h.next_seq, h.turn_id
"""

# A write under a turn lease locks the head row but never creates it: a missing row means
# the thread was deleted while the turn ran, and its late write must not bring it back.
LOCK_LEASED_THREAD = """
SELECT generation, next_seq, turn_id FROM ai_chatbot.checkpoint_threads
WHERE thread_id = %s FOR UPDATE
"""

# Maintenance (delete, copy, prune, delete_for_runs) locks its threads' head rows with
# `lakebase_memory.memory.thread_locks.LOCK_THREADS`, the one lock order of all maintenance,
# which creates missing ones: a thread only LangGraph's stock saver wrote gets one, so that a
# first write of the linear saver cannot slip in between prune's reading of references and
# its deleting of entries. Created rows of threads left without checkpoints go again at the end
# of the operation (a thread that has nothing, or was deleted by the maintenance the lock
# waited for, must not come back).
DROP_EMPTY_HEADS = """
DELETE FROM ai_chatbot.checkpoint_threads h
WHERE h.thread_id = ANY(%s)
    AND NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = h.thread_id)
"""

# After deleting log entries: a new generation (caches everywhere start over) and the
# thread's exact size again (writes only ever add to it).
RECOUNT_THREAD = """
UPDATE ai_chatbot.checkpoint_threads SET generation = gen_random_uuid(), size_bytes = (
    SELECT coalesce(sum(octet_length(checkpoint::text) + octet_length(metadata::text)), 0)
    FROM checkpoints WHERE thread_id = %(thread_id)s
) + (
    SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_blobs
    WHERE thread_id = %(thread_id)s
) + (
    SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_writes
    WHERE thread_id = %(thread_id)s
) + (
    SELECT coalesce(sum(octet_length(blob)), 0) FROM ai_chatbot.checkpoint_messages
    WHERE thread_id = %(thread_id)s
)
WHERE thread_id = %(thread_id)s
"""

# After `LOCK_THREADS`: the thread's writers wait for this transaction, so no write can slip
# in between the statements.
DELETE_THREAD = (
    "DELETE FROM ai_chatbot.checkpoint_threads WHERE thread_id = %s",
    "DELETE FROM checkpoints WHERE thread_id = %s",
    "DELETE FROM checkpoint_blobs WHERE thread_id = %s",
    "DELETE FROM checkpoint_writes WHERE thread_id = %s",
    "DELETE FROM ai_chatbot.checkpoint_messages WHERE thread_id = %s",
)

THREAD_HAS_DATA = """
SELECT EXISTS (SELECT 1 FROM checkpoints WHERE thread_id = %s)
    OR EXISTS (SELECT 1 FROM ai_chatbot.checkpoint_messages WHERE thread_id = %s) AS taken
"""

# Copies keep checkpoint ids and log sequence numbers, so every reference stays valid.
COPY_THREAD = (
    """INSERT INTO checkpoints
        (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
    SELECT %s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
    FROM checkpoints WHERE thread_id = %s""",
    """INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT %s, checkpoint_ns, channel, version, type, blob
    FROM checkpoint_blobs WHERE thread_id = %s""",
    """INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path,
        idx, channel, type, blob)
    SELECT %s, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
    FROM checkpoint_writes WHERE thread_id = %s""",
    """INSERT INTO ai_chatbot.checkpoint_messages (thread_id, seq, message_id, type, blob)
    SELECT %s, seq, message_id, type, blob
    FROM ai_chatbot.checkpoint_messages WHERE thread_id = %s""",
)
# The copy continues the source's numbering, under a generation of its own; it is the
# target's last activity.
CONTINUE_NUMBERING = """
UPDATE ai_chatbot.checkpoint_threads t
SET next_seq = s.next_seq, generation = gen_random_uuid(), user_id = s.user_id,
    message_count = s.message_count, size_bytes = s.size_bytes, updated_at = now()
FROM ai_chatbot.checkpoint_threads s
WHERE t.thread_id = %s AND s.thread_id = %s
"""

# Per namespace, the newest checkpoint; prune keeps it and deletes the older ones. Newer
# checkpoints cannot appear meanwhile: prune holds the thread's lock.
PRUNE_OLDER_CHECKPOINTS = """
WITH latest AS (
    SELECT checkpoint_ns, max(checkpoint_id) AS checkpoint_id
    FROM checkpoints WHERE thread_id = %s GROUP BY checkpoint_ns
)
DELETE FROM checkpoints c USING latest
WHERE c.thread_id = %s AND c.checkpoint_ns = latest.checkpoint_ns
    AND c.checkpoint_id < latest.checkpoint_id
RETURNING c.checkpoint_ns, c.checkpoint_id
"""

THREADS_OF_RUNS = """
SELECT DISTINCT thread_id FROM checkpoints WHERE metadata ->> 'run_id' = ANY(%s)
"""

DELETE_RUN_CHECKPOINTS = """
DELETE FROM checkpoints WHERE thread_id = ANY(%s) AND metadata ->> 'run_id' = ANY(%s)
RETURNING thread_id, checkpoint_ns, checkpoint_id
"""

DELETE_WRITES_OF = """
DELETE FROM checkpoint_writes w
USING unnest(%s::text[], %s::text[]) AS gone(checkpoint_ns, checkpoint_id)
WHERE w.thread_id = %s AND w.checkpoint_ns = gone.checkpoint_ns
    AND w.checkpoint_id = gone.checkpoint_id
"""

# A kept checkpoint whose parent was deleted starts the history now.
DETACH_ORPHANS = """
UPDATE checkpoints c SET parent_checkpoint_id = NULL
WHERE c.thread_id = %s AND c.parent_checkpoint_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM checkpoints p WHERE p.thread_id = c.thread_id
        AND p.checkpoint_ns = c.checkpoint_ns AND p.checkpoint_id = c.parent_checkpoint_id
)
"""

# Blobs no remaining checkpoint of the thread names (a hash anti-join, not a per-blob scan).
DELETE_UNREFERENCED_BLOBS = """
WITH used AS (
    SELECT DISTINCT c.checkpoint_ns, v.key AS channel, v.value AS version
    FROM checkpoints c, jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
    WHERE c.thread_id = %s
)
DELETE FROM checkpoint_blobs b
WHERE b.thread_id = %s AND NOT EXISTS (
    SELECT 1 FROM used u WHERE u.checkpoint_ns = b.checkpoint_ns
        AND u.channel = b.channel AND u.version = b.version
)
"""

# The references that keep log entries alive: in checkpoints' JSON (SELECT_INLINE_REFERENCES)
# and, from threads saved by earlier versions, in blobs and writes.
SELECT_REFERENCES = """
SELECT type, blob FROM checkpoint_blobs WHERE thread_id = %s AND type = ANY(%s)
UNION ALL
SELECT type, blob FROM checkpoint_writes WHERE thread_id = %s AND type = ANY(%s)
"""

SELECT_INLINE_REFERENCES = """
SELECT v.value -> 'lakebase.messages' AS runs
FROM checkpoints c, jsonb_each(c.checkpoint -> 'channel_values') AS v
WHERE c.thread_id = %s AND jsonb_typeof(v.value) = 'object' AND v.value ? 'lakebase.messages'
"""

DELETE_UNREFERENCED_LOG = """
DELETE FROM ai_chatbot.checkpoint_messages WHERE thread_id = %s AND seq <> ALL(%s)
"""


# -- a checkpoint or a task's writes in ONE statement --------------------------------------
#
# `head` advances the thread's row only if it is as the writer expects it (same log
# generation and next sequence number, same turn lease when the write carries one); every
# insert selects FROM head, so either all of it happens or nothing does. In autocommit that
# is one round trip and one commit per checkpoint. A writer whose cached expectation is stale
# sees `applied = 0` and starts again under the thread's lock (see `ops._op_save`).

_HEAD = """
WITH head AS (
    UPDATE ai_chatbot.checkpoint_threads
    -- Last activity to the second: writes within the same second leave the indexed column
    -- as it is, so PostgreSQL updates the row in place (HOT) instead of adding index entries.
    SET next_seq = greatest(next_seq, %(next_seq)s),
        updated_at = CASE WHEN updated_at < now() - interval '1 second' THEN now()
                          ELSE updated_at END,
        size_bytes = size_bytes + %(size)s,
        message_count = coalesce(%(message_count)s::integer, message_count),
        user_id = coalesce(user_id, %(user_id)s::text)
    WHERE thread_id = %(thread_id)s
        AND generation = coalesce(%(generation)s::uuid, generation)
        AND next_seq = coalesce(%(expected_seq)s::integer, next_seq)
        AND turn_id IS NOT DISTINCT FROM coalesce(%(turn_id)s::uuid, turn_id)
    RETURNING thread_id
)"""

_LOG = """, logged AS (
    INSERT INTO ai_chatbot.checkpoint_messages (thread_id, seq, message_id, type, blob)
    SELECT head.thread_id, e.seq, e.message_id, e.type, e.blob
    FROM head, unnest(
        %(log_seq)s::integer[], %(log_id)s::text[], %(log_type)s::text[], %(log_blob)s::bytea[]
    ) AS e(seq, message_id, type, blob)
)"""

_BLOBS = """, blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT head.thread_id, %(checkpoint_ns)s, b.channel, b.version, b.type, b.blob
    FROM head, unnest(
        %(blob_channel)s::text[], %(blob_version)s::text[], %(blob_type)s::text[],
        %(blob_blob)s::bytea[]
    ) AS b(channel, version, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
)"""

_CHECKPOINT = """, saved AS (
    INSERT INTO checkpoints
        (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
    SELECT head.thread_id, %(checkpoint_ns)s, %(checkpoint_id)s, %(parent_id)s,
        %(checkpoint)s::jsonb, %(metadata)s::jsonb
    FROM head
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
    DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
)"""

_WRITES = """, written AS (
    INSERT INTO checkpoint_writes
        (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
    SELECT head.thread_id, %(checkpoint_ns)s, %(checkpoint_id)s, %(task_id)s, %(task_path)s,
        w.idx, w.channel, w.type, w.blob
    FROM head, unnest(
        %(write_idx)s::integer[], %(write_channel)s::text[], %(write_type)s::text[],
        %(write_blob)s::bytea[]
    ) AS w(idx, channel, type, blob)
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
    {on_conflict}
)"""

# Special writes (errors, interrupts, resumes) replace an earlier one; others keep the first.
_REPLACE_WRITE = (
    "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob"
)


@functools.cache
def save_statement(*, log: bool, blobs: bool, checkpoint: bool, writes: str | None) -> str:
    """The one statement of a write; `writes` is None, "insert" or "replace"."""
    parts = [_HEAD]
    if log:
        parts.append(_LOG)
    if blobs:
        parts.append(_BLOBS)
    if checkpoint:
        parts.append(_CHECKPOINT)
    if writes is not None:
        on_conflict = _REPLACE_WRITE if writes == "replace" else "DO NOTHING"
        parts.append(_WRITES.format(on_conflict=on_conflict))
    parts.append("\nSELECT count(*) AS applied FROM head")
    return "".join(parts)


# -- turn leases: one turn at a time per thread -------------------------------------------

# Takes the lease if nobody holds it or the holder's expired (a crashed process); creates
# the thread's row for a new thread. The same turn taking it again (its first try committed
# before the connection dropped) gets it too.
ACQUIRE_TURN = """
INSERT INTO ai_chatbot.checkpoint_threads AS h (thread_id, user_id, turn_id, turn_expires_at)
VALUES (%(thread_id)s, %(user_id)s, %(turn_id)s, now() + make_interval(secs => %(seconds)s))
ON CONFLICT (thread_id) DO UPDATE
SET turn_id = EXCLUDED.turn_id, turn_expires_at = EXCLUDED.turn_expires_at,
    user_id = coalesce(h.user_id, EXCLUDED.user_id)
WHERE h.turn_id IS NULL OR h.turn_expires_at < now() OR h.turn_id = EXCLUDED.turn_id
RETURNING h.turn_id
"""

TURN_HOLDER = """
SELECT greatest(0, extract(epoch FROM turn_expires_at - now()))::float AS seconds_left
FROM ai_chatbot.checkpoint_threads WHERE thread_id = %s
"""

RENEW_TURN = """
UPDATE ai_chatbot.checkpoint_threads
SET turn_expires_at = now() + make_interval(secs => %(seconds)s)
WHERE thread_id = %(thread_id)s AND turn_id = %(turn_id)s
RETURNING thread_id
"""

RELEASE_TURN = """
UPDATE ai_chatbot.checkpoint_threads SET turn_id = NULL, turn_expires_at = NULL
WHERE thread_id = %(thread_id)s AND turn_id = %(turn_id)s
"""
