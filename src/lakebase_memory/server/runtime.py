"""Everything a running server holds, opened once at start-up and closed at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import TTLConfig
from langgraph.store.postgres.base import PostgresIndexConfig

from lakebase_memory.agent import build_graph, close_model
from lakebase_memory.agent.context import ContextPlanner
from lakebase_memory.agent.models import open_model
from lakebase_memory.agent.models.embeddings import EmbeddingModel, build_embeddings
from lakebase_memory.agent.tools import open_tools
from lakebase_memory.config import Settings
from lakebase_memory.database import DatabaseTarget, Pool, open_pool, open_target
from lakebase_memory.database.pool import probe_server
from lakebase_memory.database.watch import EmbeddedWatch
from lakebase_memory.errors import ConfigurationError
from lakebase_memory.memory import ChatMessages, ThreadCatalogue, make_checkpointer
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver
from lakebase_memory.memory.store import AsyncMemoryStore
from lakebase_memory.observability.tracing import TurnTracing, open_tracing
from lakebase_memory.schema import ensure_schema
from lakebase_memory.server.retention import RetentionTask

if TYPE_CHECKING:
    from lakebase_memory.server.background import BackgroundResponses

logger = logging.getLogger("lakebase_memory")
SHUTDOWN_GRACE_SECONDS = 30.0  # how long running turns may take to finish at shutdown


@dataclass
class AppRuntime:
    settings: Settings
    target: DatabaseTarget
    server_version: str
    pool: Pool
    checkpointer: AsyncLinearPostgresSaver
    store: AsyncMemoryStore  # long-term memory: what the agent remembers of each user
    tool_names: list[str]  # the server's tools the agent may call
    graph: CompiledStateGraph
    threads: ThreadCatalogue
    messages: ChatMessages
    model: BaseChatModel
    owns_model: bool  # built here (closed at shutdown), not handed in by the caller
    # What of a thread the model is sent: its window, its token counter, the summary.
    planner: ContextPlanner
    retention: RetentionTask | None = None  # the background retention loop, if a rule is set
    watch: EmbeddedWatch | None = None  # starts the embedded PostgreSQL again if it dies
    tracing: TurnTracing | None = None  # MLflow tracing of turns (MLFLOW_TRACING), if on
    # Background responses (issue 15): stored, resumable, cancellable turns.
    responses: BackgroundResponses | None = None
    # Turns that outlive their request (the client went away) and lease releases: finished
    # before the pool closes.
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        model: BaseChatModel | None = None,
        target: DatabaseTarget | None = None,
    ) -> AppRuntime:
        """Open everything; `target` is one already open (a worker process's, `workers.py`)."""
        if target is None:
            target = await asyncio.to_thread(open_target, settings)
        pool: Pool | None = None
        owns_model = model is None
        try:
            # First: a tracing misconfiguration fails the start before the pool and model open.
            tracing = await asyncio.to_thread(open_tracing, settings)
            facts = await probe_server(target)
            version = facts.version
            pool_size = facts.pool_size(settings)
            embedding = await asyncio.to_thread(build_embeddings, settings)
            created = await ensure_schema(
                await target.login_conninfo(),
                settings.checkpoint_schema,
                vector_dims=None if embedding is None else embedding.dims,
            )
            for line in created:
                logger.info("created %s", line)
            pool = await open_pool(
                target, settings, search_path=settings.checkpoint_schema, max_size=pool_size
            )
            opened = await open_model(settings, model)
            model = opened.chat
            checkpointer = make_checkpointer(pool)
            store = open_store(pool, settings, embedding)
            tools = await open_tools(settings)
            planner = ContextPlanner(
                model, opened.tokens, opened.window, settings.system_prompt, opened.prepare_ahead
            )
            runtime = cls(
                settings=settings,
                target=target,
                server_version=version,
                pool=pool,
                checkpointer=checkpointer,
                store=store,
                tool_names=[tool.name for tool in tools] if can_call_tools(model) else [],
                graph=agent_graph(model, settings, checkpointer, planner, tools, store),
                threads=ThreadCatalogue(pool, settings.checkpoint_schema),
                messages=ChatMessages(pool),
                model=model,
                owns_model=owns_model,
                planner=planner,
                tracing=tracing,
            )
        except BaseException:
            try:
                if pool is not None:
                    await pool.close()
                await asyncio.to_thread(target.close)
            finally:
                if owns_model and model is not None:
                    await close_model(model)
            raise
        logger.info(
            "memory database: %s PostgreSQL %s, data in %s; pool of %d connections",
            target.kind.value, version.split()[0], target.location, pool_size,
        )  # fmt: skip
        runtime.retention = RetentionTask.start(pool, settings)
        runtime.watch = EmbeddedWatch.of(target)
        return runtime

    @property
    def model_name(self) -> str:
        return str(getattr(self.model, "_llm_type", type(self.model).__name__))

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `work` in a task the runtime keeps (and waits for at shutdown), not the
        request's: a client going away does not cancel it."""
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def close(self) -> None:
        try:
            if self.watch is not None:
                await self.watch.stop()
            if self.retention is not None:
                await self.retention.stop()
            if self.responses is not None:
                await self.responses.close()
            if self.background:
                _, running = await asyncio.wait(
                    set(self.background), timeout=SHUTDOWN_GRACE_SECONDS
                )
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)
            await self.planner.close()
        finally:  # whatever failed above, the connections and the model's clients close
            try:
                await self.pool.close()
                await asyncio.to_thread(self.target.close)
            finally:
                if self.owns_model:
                    await close_model(self.model)


def open_store(
    pool: Pool, settings: Settings, embedding: EmbeddingModel | None
) -> AsyncMemoryStore:
    """The long-term memory store on the app's pool: by meaning and words with an embedding
    model, by words alone without; expired items are never read (retention deletes them)."""
    ttl: TTLConfig = {"refresh_on_read": True, "omit_expired": True}
    if settings.memory_item_ttl_minutes is not None:
        ttl["default_ttl"] = settings.memory_item_ttl_minutes
    index: PostgresIndexConfig | None = None
    if embedding is not None:
        index = {"dims": embedding.dims, "embed": embedding.embeddings}
    return AsyncMemoryStore(pool, index=index, ttl=ttl)


def agent_graph(
    model: BaseChatModel,
    settings: Settings,
    checkpointer: AsyncLinearPostgresSaver,
    planner: ContextPlanner,
    tools: list[BaseTool],
    store: AsyncMemoryStore,
) -> CompiledStateGraph:
    if tools and not can_call_tools(model):
        if settings.agent_tools:
            raise ConfigurationError(
                f"AGENT_TOOLS is on, but the {type(model).__name__} model cannot call tools. "
                "Set AGENT_TOOLS=false to run it without tools (no long-term memory tools then)."
            )
        logger.warning("the %s model cannot call tools: the agent runs without tools",
                       type(model).__name__)  # fmt: skip
        tools = []
    return build_graph(
        model, settings.system_prompt, checkpointer, planner=planner, tools=tools, store=store
    )


def can_call_tools(model: BaseChatModel) -> bool:
    """Whether the model's class implements `bind_tools` (LangChain's default refuses)."""
    return type(model).bind_tools is not BaseChatModel.bind_tools
