"""`lakebase-memory setup`: create or upgrade the app's schema objects now, as the owner.

For teams that do not let the app's own role create tables: an owner runs this once (and after
each upgrade), then grants the app's role what it needs with `lakebase-memory grant`.

It runs the app's own start-up set-up (`schema.ensure_schema`): checkpoint, chat and
bookkeeping tables, and the long-term memory store's (`store_migrations`, `store`). The store's
vector tables (`vector_migrations`, `store_vectors`, and the pgvector extension) are made for
the configured embedding model's dimensions, or for `--embedding-dims N`: the owner's own
configuration often has no EMBEDDING_BACKEND when the deployed app's has one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

import psycopg
import typer

from lakebase_memory.agent.models.embeddings import embedding_dims
from lakebase_memory.config import Settings, load_settings
from lakebase_memory.database import check_login, open_target
from lakebase_memory.database.pool import CONNECTION_KWARGS
from lakebase_memory.errors import LakebaseMemoryError
from lakebase_memory.schema import ensure_schema
from lakebase_memory.schema.privileges import required_schemas

KINDS = {"n": "schema", "r": "table", "p": "table", "S": "sequence", "v": "view"}
# The app's schemas and their tables, sequences and views, with their owners (indexes go with
# their tables). Schemas are listed as kind 'n'.
OBJECTS_SQL = """
SELECT 'n' AS kind, nspname AS schema, NULL AS name, pg_get_userbyid(nspowner) AS owner
FROM pg_namespace WHERE nspname = ANY(%(schemas)s)
UNION ALL
SELECT c.relkind::text, n.nspname, c.relname, pg_get_userbyid(c.relowner)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'S', 'v')
"""


@dataclass(frozen=True)
class SchemaObject:
    schema: str
    name: str | None
    kind: str
    owner: str

    def __str__(self) -> str:
        if self.name is None:
            return f"schema {self.schema}"
        return f'{KINDS.get(self.kind, self.kind)} {self.schema}."{self.name}"'

    @property
    def sort_key(self) -> tuple[str, str, str]:
        # A schema first, then its tables, sequences and indexes by name.
        return (self.schema, self.name or "", self.kind)


@dataclass(frozen=True)
class SetupReport:
    role: str
    steps: list[str]  # the migrations applied, as ensure_schema reports them
    created: list[SchemaObject]  # what exists now and did not before
    vector_dims: int | None = None  # the store's vector tables were asked for, this wide
    has_vectors: bool = False  # the store's vector table exists (now)


def setup(
    embedding_dims_option: Annotated[
        int | None,
        typer.Option(
            "--embedding-dims",
            min=1,
            max=16_000,
            help="Also create the memory store's vector tables (pgvector) for embeddings of "
            "N dimensions, as the app's EMBEDDING_BACKEND makes them (default: the configured "
            "embedding model's; none without one).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create or upgrade the schema objects now, as the owner, and print what was created."""
    settings = load_settings()
    try:
        report = asyncio.run(run_setup(settings, embedding_dims_option))
    except LakebaseMemoryError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    for step in report.steps:
        typer.echo(f"✓ created {step}")
    if not report.steps:
        typer.echo(f"✓ everything is up to date (checked as role {report.role})")
        return
    typer.echo(f"{len(report.created)} object(s) created, owned by {report.role}:")
    for item in report.created:
        typer.echo(f"  + {item}")
    if report.vector_dims is None and not report.has_vectors:
        typer.echo(
            "note: no vector tables for the memory store (no embedding model is configured "
            "here): if the app searches memories by meaning (EMBEDDING_BACKEND), run "
            "`lakebase-memory setup --embedding-dims N` with its embeddings' dimensions."
        )
    typer.echo(
        "next: let the app's role use them with `lakebase-memory grant <principal>` (run as "
        f"{report.role}), then check with `lakebase-memory doctor` in the app's configuration."
    )


async def run_setup(settings: Settings, vector_dims: int | None = None) -> SetupReport:
    """Set up the tables; `vector_dims` (default: the configured embedding model's) makes the
    store's vector tables too."""
    dims = vector_dims if vector_dims is not None else embedding_dims(settings)
    target = await asyncio.to_thread(open_target, settings)
    try:
        version = await check_login(target)
        typer.echo(f"database: {target.kind.value} PostgreSQL {version} at {target.location}")
        conninfo = await target.login_conninfo()
        schemas = required_schemas(settings.checkpoint_schema)
        role, before = await _objects(conninfo, schemas)
        steps = await ensure_schema(conninfo, settings.checkpoint_schema, vector_dims=dims)
        _, after = await _objects(conninfo, schemas)
        vectors = any(
            (o.schema, o.name) == (settings.checkpoint_schema, "store_vectors") for o in after
        )
        created = sorted(after - before, key=lambda o: o.sort_key)
        return SetupReport(role, steps, created, dims, vectors)
    finally:
        await asyncio.to_thread(target.close)


async def _objects(conninfo: str, schemas: list[str]) -> tuple[str, set[SchemaObject]]:
    async with await psycopg.AsyncConnection.connect(conninfo, **CONNECTION_KWARGS) as conn:
        cursor = await conn.execute(OBJECTS_SQL, {"schemas": schemas})
        rows = await cursor.fetchall()
        found = {SchemaObject(r["schema"], r["name"], r["kind"], r["owner"]) for r in rows}
        return conn.info.user, found
