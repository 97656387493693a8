"""Part of check 6 (schema): the long-term memory store's tables and, with an embedding model,
its vector table and pgvector. What the store needs beyond the tables' existence, which the
schema check reads for every table alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg.rows import DictRow

from lakebase_memory.config import Settings
from lakebase_memory.config.settings import EmbeddingBackend
from lakebase_memory.schema.store_schema import pending_store_steps, pgvector_missing, vector_width

Connection = psycopg.AsyncConnection[DictRow]


@dataclass
class StoreFindings:
    pending: list[str] = field(default_factory=list)  # set-up steps not done yet
    problems: list[str] = field(default_factory=list)  # what set-up alone cannot fix
    fixes: list[str] = field(default_factory=list)  # one sentence per problem, or for vectors


def vectors_configured(settings: Settings) -> bool:
    """An embedding model is configured: the store needs its vector tables."""
    return settings.embedding_backend is not EmbeddingBackend.NONE


def configured_dims(settings: Settings) -> int | None:
    """The embeddings' dimensions the app would use, or None without an embedding model."""
    # Imported here: the agent's package sits above diagnosis (README: Architecture); only
    # this pure function of the settings is used.
    from lakebase_memory.agent.models.embeddings import embedding_dims

    return embedding_dims(settings)


async def store_findings(conn: Connection, settings: Settings) -> StoreFindings:
    """With an embedding model: the store's pending set-up steps, pgvector on the server and
    the vector table's width. Raises InsufficientPrivilege when the role may not read the
    store's migration tables (the privileges check says which grants are missing)."""
    schema = settings.checkpoint_schema
    dims = configured_dims(settings)
    if dims is None:
        return StoreFindings()  # the store's own steps are in schema.pending_migrations
    found = StoreFindings(pending=await pending_store_steps(conn, schema, dims))
    cursor = await conn.execute(
        "SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'"
    )
    extension = await cursor.fetchone()
    if extension is None:
        found.problems.append("extension vector (pgvector) is not available on this server")
        found.fixes.append(
            pgvector_missing(f"EMBEDDING_BACKEND={settings.embedding_backend.value}")
        )
        return found
    width = await vector_width(conn, schema)
    if width is not None and width != dims:
        found.problems.append(
            f"{schema}.store_vectors holds embeddings of {width} dimensions, the configured "
            f"model makes {dims}"
        )
        found.fixes.append(
            f"Set EMBEDDING_DIMS={width} (with the embedding model those vectors came from), "
            f"or, to change models, drop the table as its owner (`DROP TABLE "
            f"{schema}.store_vectors; DELETE FROM {schema}.vector_migrations;`) and run "
            f"`lakebase-memory setup --embedding-dims {dims}`."
        )
    elif found.pending:
        found.fixes.append(
            f"The memory store's vector tables (for EMBEDDING_BACKEND="
            f"{settings.embedding_backend.value}, {dims} dimensions): `lakebase-memory setup "
            f"--embedding-dims {dims}` as the database owner, which also enables pgvector "
            "(`CREATE EXTENSION vector`: a superuser on plain PostgreSQL, the instance owner "
            "on Lakebase)."
        )
    return found
