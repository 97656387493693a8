"""The SQL of the linear savers, shared by the sync and async classes.

The stock checkpoint tables (`checkpoints`, `checkpoint_blobs`, `checkpoint_writes`) are named
without a schema, like LangGraph's saver does, so they follow the connection's search_path and
are the very tables the stock saver uses. The message log is in `ai_chatbot` (migration
`0002_checkpoint_message_log`). Every statement takes its values as `%s` parameters.
"""

from __future__ import annotations

from lakebase_memory.schema.app_migrations import MIGRATIONS

# The log tables' DDL is the app migration's, run by `setup()` for library users.
LOG_TABLES_DDL = next(m.sql for m in MIGRATIONS if m.name == "0002_checkpoint_message_log")
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
    (
        SELECT h.generation FROM ai_chatbot.checkpoint_threads h WHERE h.thread_id = c.thread_id
    ) AS generation
FROM checkpoints c
"""

SELECT_LOG_ENTRIES = """
SELECT m.thread_id, m.seq, m.type, m.blob
FROM unnest(%s::text[], %s::int[]) AS wanted(thread_id, seq)
JOIN ai_chatbot.checkpoint_messages m USING (thread_id, seq)
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
RETURNING h.generation, h.next_seq
"""

# Locks an existing thread's head row (maintenance: nothing to create).
LOCK_EXISTING_THREAD = """
SELECT generation FROM ai_chatbot.checkpoint_threads WHERE thread_id = %s FOR UPDATE
"""

ADVANCE_THREAD = "UPDATE ai_chatbot.checkpoint_threads SET next_seq = %s WHERE thread_id = %s"

NEW_GENERATION = """
UPDATE ai_chatbot.checkpoint_threads SET generation = gen_random_uuid() WHERE thread_id = %s
"""

INSERT_LOG_ENTRY = """
INSERT INTO ai_chatbot.checkpoint_messages (thread_id, seq, message_id, type, blob)
VALUES (%s, %s, %s, %s, %s)
"""

UPSERT_BLOB = """
INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
"""

UPSERT_CHECKPOINT = """
INSERT INTO checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
"""

_WRITE_COLUMNS = """
INSERT INTO checkpoint_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
"""
# Special writes (errors, interrupts, resumes) replace an earlier one; others keep the first.
UPSERT_WRITE = (
    _WRITE_COLUMNS
    + "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob"
)
INSERT_WRITE = _WRITE_COLUMNS + "DO NOTHING"

DELETE_THREAD = (
    "DELETE FROM checkpoints WHERE thread_id = %s",
    "DELETE FROM checkpoint_blobs WHERE thread_id = %s",
    "DELETE FROM checkpoint_writes WHERE thread_id = %s",
    "DELETE FROM ai_chatbot.checkpoint_messages WHERE thread_id = %s",
    "DELETE FROM ai_chatbot.checkpoint_threads WHERE thread_id = %s",
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
# The copy continues the source's numbering, under a generation of its own.
CONTINUE_NUMBERING = """
UPDATE ai_chatbot.checkpoint_threads t
SET next_seq = s.next_seq, generation = gen_random_uuid()
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

# The references that keep log entries alive: message-list blobs and message writes.
SELECT_REFERENCES = """
SELECT type, blob FROM checkpoint_blobs WHERE thread_id = %s AND type = ANY(%s)
UNION ALL
SELECT type, blob FROM checkpoint_writes WHERE thread_id = %s AND type = ANY(%s)
"""

DELETE_UNREFERENCED_LOG = """
DELETE FROM ai_chatbot.checkpoint_messages WHERE thread_id = %s AND seq <> ALL(%s)
"""
