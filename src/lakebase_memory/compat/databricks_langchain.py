"""databricks-langchain's Lakebase classes, on this project's savers, store and connection.

Code written for `databricks_langchain` runs with its import changed to `lakebase_memory`:

- `CheckpointSaver` / `AsyncCheckpointSaver`: LangGraph checkpointers; here the linear
  savers (`LinearPostgresSaver` / `AsyncLinearPostgresSaver`: a conversation's storage grows
  with its length, not its square; turn leases; same tables as LangGraph's saver).
- `DatabricksStore` / `AsyncDatabricksStore`: LangGraph `BaseStore`s; here the memory store
  (`MemoryStore` / `AsyncMemoryStore`: LangGraph's PostgresStore tables, searched by words
  without embeddings and by words and meaning with them).

The constructors take databricks-langchain's keywords: exactly one target (`instance_name=`, a
provisioned instance by name or host; `autoscaling_endpoint=`; or `project=` + `branch=`, or
`branch=` as `projects/<p>/branches/<b>`), `workspace_client=` (else the SDK's configuration
from the environment, `.env.local` and `.env`), `schema=` (the tables' schema, `public` by
default), the store's `embedding_endpoint=` / `embedding_dims=` / `embedding_fields=` /
`embeddings=`, and pool options (`min_size`, `max_size`, `timeout`, `configure`, ... for
psycopg_pool). Beyond them: `settings=` (the project's settings: PGPORT, timeouts), the
savers' `serde=` and `cache_threads=`, the stores' `ttl=`.

Connections log in as the caller's Databricks identity with database credentials the project's
connector mints and renews (`LakebaseTarget`). `setup()` runs the project's schema set-up
(`ensure_schema`): checkpoint and log tables, the store's tables with full-text search, its
vector table when the store has embeddings, and the app's tables; idempotent.

Sync classes find the target and open their pool in the constructor, as databricks-langchain's
do; async ones on `async with` (or `await x.open()`), without blocking the event loop. An
unknown target fails with the project's `LakebaseError` ("Failed to connect to Lakebase
instance ..." and the cause), a refused login with `DatabaseUnavailableError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.store.base import TTLConfig
from langgraph.store.postgres.base import PostgresIndexConfig

from lakebase_memory.compat.embeddings import index_config
from lakebase_memory.compat.lakebase_target import AsyncPoolOwner, LakebaseTarget, SyncPoolOwner
from lakebase_memory.config import Settings
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver, LinearPostgresSaver
from lakebase_memory.memory.saver.cache import DEFAULT_MAX_THREADS
from lakebase_memory.memory.store import AsyncMemoryStore, MemoryStore

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

__all__ = ["AsyncCheckpointSaver", "AsyncDatabricksStore", "CheckpointSaver", "DatabricksStore"]


class CheckpointSaver(SyncPoolOwner, LinearPostgresSaver):
    """`databricks_langchain.CheckpointSaver`: a sync LangGraph checkpointer on Lakebase.

    Example:
        with CheckpointSaver(instance_name="my-instance") as checkpointer:
            checkpointer.setup()
            graph = builder.compile(checkpointer=checkpointer)
    """

    def __init__(
        self,
        *,
        instance_name: str | None = None,
        autoscaling_endpoint: str | None = None,
        project: str | None = None,
        branch: str | None = None,
        workspace_client: WorkspaceClient | None = None,
        schema: str | None = None,
        settings: Settings | None = None,
        serde: SerializerProtocol | None = None,
        cache_threads: int = DEFAULT_MAX_THREADS,
        **pool_kwargs: Any,
    ) -> None:
        self._lakebase = LakebaseTarget(
            type(self).__name__,
            instance_name=instance_name,
            autoscaling_endpoint=autoscaling_endpoint,
            project=project,
            branch=branch,
            workspace_client=workspace_client,
            schema=schema,
            settings=settings,
            pool_kwargs=pool_kwargs,
        )
        super().__init__(self._lakebase.sync_pool(), serde=serde, cache_threads=cache_threads)

    def setup(self) -> None:
        """Create or upgrade the tables (the project's schema set-up, in `schema`)."""
        self._lakebase.setup_blocking()


class AsyncCheckpointSaver(AsyncPoolOwner, AsyncLinearPostgresSaver):
    """`databricks_langchain.AsyncCheckpointSaver`: an async LangGraph checkpointer on Lakebase.

    Example:
        async with AsyncCheckpointSaver(instance_name="my-instance") as checkpointer:
            await checkpointer.setup()
            graph = builder.compile(checkpointer=checkpointer)
    """

    def __init__(
        self,
        *,
        instance_name: str | None = None,
        autoscaling_endpoint: str | None = None,
        project: str | None = None,
        branch: str | None = None,
        workspace_client: WorkspaceClient | None = None,
        schema: str | None = None,
        settings: Settings | None = None,
        serde: SerializerProtocol | None = None,
        cache_threads: int = DEFAULT_MAX_THREADS,
        **pool_kwargs: Any,
    ) -> None:
        self._lakebase = LakebaseTarget(
            type(self).__name__,
            instance_name=instance_name,
            autoscaling_endpoint=autoscaling_endpoint,
            project=project,
            branch=branch,
            workspace_client=workspace_client,
            schema=schema,
            settings=settings,
            pool_kwargs=pool_kwargs,
        )
        super().__init__(self._not_open(), serde=serde, cache_threads=cache_threads)

    async def setup(self) -> None:
        """Create or upgrade the tables (the project's schema set-up, in `schema`)."""
        await self._lakebase.setup()


class _StoreIndex:
    """What the two stores share beyond their target: the embeddings, from their keywords."""

    _lakebase: LakebaseTarget
    embedding_dims: int | None

    def _index(
        self,
        endpoint: str | None,
        dims: int | None,
        fields: list[str] | None,
        embeddings: Embeddings | None,
    ) -> PostgresIndexConfig | None:
        index = index_config(
            self._lakebase.workspace,
            embedding_endpoint=endpoint,
            embedding_dims=dims,
            embedding_fields=fields,
            embeddings=embeddings,
        )
        self.embedding_dims = None if index is None else index["dims"]
        return index


class DatabricksStore(_StoreIndex, SyncPoolOwner, MemoryStore):
    """`databricks_langchain.DatabricksStore`: a sync LangGraph store on Lakebase.

    With `embedding_endpoint=` (a Databricks embedding endpoint) and `embedding_dims=`, or
    `embeddings=` and `embedding_dims=`, it searches by words and meaning; else by words.

    Example:
        with DatabricksStore(instance_name="my-instance",
                             embedding_endpoint="databricks-gte-large-en",
                             embedding_dims=1024) as store:
            store.setup()
            store.put(("user_memories", "ada"), "colour", {"text": "likes teal"})
            store.search(("user_memories", "ada"), query="favourite colour")
    """

    def __init__(
        self,
        *,
        instance_name: str | None = None,
        autoscaling_endpoint: str | None = None,
        project: str | None = None,
        branch: str | None = None,
        workspace_client: WorkspaceClient | None = None,
        embedding_endpoint: str | None = None,
        embedding_dims: int | None = None,
        embedding_fields: list[str] | None = None,
        embeddings: Embeddings | None = None,
        schema: str | None = None,
        settings: Settings | None = None,
        ttl: TTLConfig | None = None,
        **pool_kwargs: Any,
    ) -> None:
        self._lakebase = LakebaseTarget(
            type(self).__name__,
            instance_name=instance_name,
            autoscaling_endpoint=autoscaling_endpoint,
            project=project,
            branch=branch,
            workspace_client=workspace_client,
            schema=schema,
            settings=settings,
            pool_kwargs=pool_kwargs,
        )
        index = self._index(embedding_endpoint, embedding_dims, embedding_fields, embeddings)
        super().__init__(self._lakebase.sync_pool(), index=index, ttl=ttl)

    def setup(self) -> None:
        """Create or upgrade the tables (the project's schema set-up, in `schema`; with
        embeddings, also the vector table of `embedding_dims` dimensions)."""
        self._lakebase.setup_blocking(self.embedding_dims)


class AsyncDatabricksStore(_StoreIndex, AsyncPoolOwner, AsyncMemoryStore):
    """`databricks_langchain.AsyncDatabricksStore`: `DatabricksStore` for asyncio.

    Example:
        async with AsyncDatabricksStore(instance_name="my-instance",
                                        embedding_endpoint="databricks-gte-large-en",
                                        embedding_dims=1024) as store:
            await store.setup()
            graph = builder.compile(checkpointer=checkpointer, store=store)
    """

    def __init__(
        self,
        *,
        instance_name: str | None = None,
        autoscaling_endpoint: str | None = None,
        project: str | None = None,
        branch: str | None = None,
        workspace_client: WorkspaceClient | None = None,
        embedding_endpoint: str | None = None,
        embedding_dims: int | None = None,
        embedding_fields: list[str] | None = None,
        embeddings: Embeddings | None = None,
        schema: str | None = None,
        settings: Settings | None = None,
        ttl: TTLConfig | None = None,
        **pool_kwargs: Any,
    ) -> None:
        self._lakebase = LakebaseTarget(
            type(self).__name__,
            instance_name=instance_name,
            autoscaling_endpoint=autoscaling_endpoint,
            project=project,
            branch=branch,
            workspace_client=workspace_client,
            schema=schema,
            settings=settings,
            pool_kwargs=pool_kwargs,
        )
        index = self._index(embedding_endpoint, embedding_dims, embedding_fields, embeddings)
        super().__init__(self._not_open(), index=index, ttl=ttl)

    async def setup(self) -> None:
        """Create or upgrade the tables (see `DatabricksStore.setup`)."""
        await self._lakebase.setup(self.embedding_dims)
