"""The app's own tables, as an append-only list of migrations.

The chat tables keep the reference UI's schema, table and column names (`ai_chatbot."Chat"`,
`"Message"`, `"Vote"`) so that its SQL grants and tools still apply. Additions to them:
`"threadId"` (the agent thread the chat is; any string) and `"updatedAt"` (last activity).
Bookkeeping lives in `drizzle.__drizzle_migrations`, as in the reference.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

CHAT_SCHEMA = "ai_chatbot"
BOOKKEEPING_SCHEMA = "drizzle"
BOOKKEEPING_TABLE = "__drizzle_migrations"
# LangGraph's checkpoint tables (created by its own migrations, in the checkpoint schema).
CHECKPOINT_TABLES = (
    "checkpoint_migrations",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
)
# The linear saver's message log (migration 0002), in the chat schema where the grants reach.
MESSAGE_LOG_TABLES = ("checkpoint_threads", "checkpoint_messages")
# The long-term memory store (LangGraph's PostgresStore layout, created by its own migrations,
# in the checkpoint schema as the reference's DatabricksStore has them).
STORE_TABLES = ("store_migrations", "store")
# Only where an embedding model is configured: pgvector's table of the store's embeddings.
VECTOR_TABLES = ("vector_migrations", "store_vectors")
# Background responses and their persisted stream events (migration 0004, issue 15).
RESPONSE_TABLES = ("responses", "response_events")


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "0001_chat_tables",
        """
CREATE TABLE IF NOT EXISTS ai_chatbot."Chat" (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    "createdAt" timestamp NOT NULL,
    title text NOT NULL,
    "userId" text NOT NULL,
    visibility varchar NOT NULL DEFAULT 'private'
        CHECK (visibility IN ('public', 'private')),
    "lastContext" jsonb,
    "threadId" text NOT NULL UNIQUE,
    "updatedAt" timestamp NOT NULL
);
-- A database the reference chat UI already set up has "Chat" without these two columns:
-- add them, and its chats become threads named by their ids.
ALTER TABLE ai_chatbot."Chat" ADD COLUMN IF NOT EXISTS "threadId" text;
ALTER TABLE ai_chatbot."Chat" ADD COLUMN IF NOT EXISTS "updatedAt" timestamp;
UPDATE ai_chatbot."Chat" SET "threadId" = id::text WHERE "threadId" IS NULL;
UPDATE ai_chatbot."Chat" SET "updatedAt" = "createdAt" WHERE "updatedAt" IS NULL;
ALTER TABLE ai_chatbot."Chat" ALTER COLUMN "threadId" SET NOT NULL;
ALTER TABLE ai_chatbot."Chat" ALTER COLUMN "updatedAt" SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS "Chat_threadId_key" ON ai_chatbot."Chat" ("threadId");
CREATE INDEX IF NOT EXISTS "Chat_userId_updatedAt_idx"
    ON ai_chatbot."Chat" ("userId", "updatedAt" DESC, id DESC);
CREATE TABLE IF NOT EXISTS ai_chatbot."Message" (
    id uuid PRIMARY KEY,
    "chatId" uuid NOT NULL REFERENCES ai_chatbot."Chat"(id) ON DELETE CASCADE,
    role varchar NOT NULL,
    parts json NOT NULL,
    attachments json NOT NULL,
    "createdAt" timestamp NOT NULL,
    "traceId" text
);
CREATE INDEX IF NOT EXISTS "Message_chatId_createdAt_idx"
    ON ai_chatbot."Message" ("chatId", "createdAt");
CREATE TABLE IF NOT EXISTS ai_chatbot."Vote" (
    "chatId" uuid NOT NULL REFERENCES ai_chatbot."Chat"(id) ON DELETE CASCADE,
    "messageId" uuid NOT NULL REFERENCES ai_chatbot."Message"(id) ON DELETE CASCADE,
    "isUpvoted" boolean NOT NULL,
    PRIMARY KEY ("chatId", "messageId")
);
""",
    ),
    # The linear message log of `memory.saver` (issue 6): each message of a thread stored once,
    # checkpoints refer to it by sequence number. `checkpoint_threads` is one row per thread:
    # the lock that fences its writers, the next free sequence number, and a generation that
    # changes whenever log entries are deleted, so in-process caches know to drop them.
    Migration(
        "0002_checkpoint_message_log",
        """
CREATE TABLE IF NOT EXISTS ai_chatbot.checkpoint_threads (
    thread_id text PRIMARY KEY,
    generation uuid NOT NULL DEFAULT gen_random_uuid(),
    next_seq integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ai_chatbot.checkpoint_messages (
    thread_id text NOT NULL,
    seq integer NOT NULL,
    message_id text,
    type text NOT NULL,
    blob bytea NOT NULL,
    PRIMARY KEY (thread_id, seq)
);
CREATE INDEX IF NOT EXISTS checkpoint_messages_message_id_idx
    ON ai_chatbot.checkpoint_messages (thread_id, message_id);
""",
    ),
    # Thread bookkeeping for the lifecycle (issue 6): who owns a thread, how big it is, when it
    # was last active (indexed per user and by age, so listing and retention stay fast at
    # millions of threads), and the turn lease that fences concurrent turns on one thread.
    Migration(
        "0003_checkpoint_thread_lifecycle",
        """
ALTER TABLE ai_chatbot.checkpoint_threads
    ADD COLUMN IF NOT EXISTS user_id text,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS message_count integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS size_bytes bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS turn_id uuid,
    ADD COLUMN IF NOT EXISTS turn_expires_at timestamptz;
CREATE INDEX IF NOT EXISTS checkpoint_threads_user_activity_idx
    ON ai_chatbot.checkpoint_threads (user_id, updated_at DESC, thread_id);
CREATE INDEX IF NOT EXISTS checkpoint_threads_activity_idx
    ON ai_chatbot.checkpoint_threads (updated_at, thread_id);
-- Finding a message by id is for cold caches only (a writer that never read the thread):
-- the primary key's thread prefix serves it, and each message costs one index entry less.
DROP INDEX IF EXISTS ai_chatbot.checkpoint_messages_message_id_idx;
""",
    ),
    # Background responses (issue 15): a turn that runs without its HTTP request, and every
    # event of its stream, so that any process can replay and continue it. The owner's lease
    # (heartbeated while it runs) lets every process mark a response whose owner died as
    # failed; `cancel_requested` carries a cancel to the owner on another replica.
    Migration(
        "0004_background_responses",
        """
CREATE TABLE IF NOT EXISTS ai_chatbot.responses (
    id text PRIMARY KEY,
    user_id text NOT NULL,
    thread_id text NOT NULL,
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'in_progress', 'completed', 'failed', 'cancelled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    response jsonb NOT NULL,
    -- The turn's new input items (the user's message): a page reloaded mid-answer shows it,
    -- as the thread has it only once the turn is saved.
    input jsonb NOT NULL DEFAULT '[]'::jsonb,
    error jsonb,
    owner_token uuid,
    lease_expires_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS responses_user_idx
    ON ai_chatbot.responses (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS responses_thread_idx ON ai_chatbot.responses (thread_id);
-- Only unfinished rows: the sweeper's scan for expired leases stays small.
CREATE INDEX IF NOT EXISTS responses_running_lease_idx
    ON ai_chatbot.responses (status, lease_expires_at)
    WHERE status IN ('queued', 'in_progress');
CREATE INDEX IF NOT EXISTS responses_finished_idx
    ON ai_chatbot.responses (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS ai_chatbot.response_events (
    response_id text NOT NULL REFERENCES ai_chatbot.responses(id) ON DELETE CASCADE,
    sequence_number integer NOT NULL,
    event jsonb NOT NULL,
    PRIMARY KEY (response_id, sequence_number)
);
""",
    ),
)
