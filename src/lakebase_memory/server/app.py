"""The FastAPI application: agent endpoints, thread API, health, OpenAPI docs at /docs."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from langchain_core.language_models import BaseChatModel

from lakebase_memory import __version__
from lakebase_memory.config import Settings, load_settings
from lakebase_memory.observability import metrics
from lakebase_memory.server import background_api, memories_api, responses_api, threads_api
from lakebase_memory.server.background import start_runtime
from lakebase_memory.server.errors import api_error_for, error_body, install_error_handlers
from lakebase_memory.server.headers import SecurityHeaders
from lakebase_memory.server.identity import caller_id
from lakebase_memory.server.limits import BodySizeLimit
from lakebase_memory.server.runtime import AppRuntime
from lakebase_memory.ui import CONTENT_SECURITY_POLICY, UI_PATHS, mount_ui

AGENT_NAME = "lakebase-memory"


def create_app(settings: Settings | None = None, *, model: BaseChatModel | None = None) -> FastAPI:
    """Build the app; the database, pool and model open in its lifespan (once per process)."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "runtime", None) is not None:
            yield  # opened and closed by start-app's server, around the ASGI lifespan
            return
        runtime = await start_runtime(settings, model=model)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="lakebase-memory",
        version=__version__,
        description="An agent whose conversations persist in PostgreSQL.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    # Added last, so outermost: its headers are on every answer, the 413 above included.
    app.add_middleware(SecurityHeaders, ui_policy=CONTENT_SECURITY_POLICY, ui_paths=UI_PATHS)
    metrics.install(app, enabled=settings.metrics_enabled)  # its middleware outermost of all
    app.include_router(responses_api.router)
    app.include_router(background_api.router)
    app.include_router(threads_api.router)
    app.include_router(memories_api.router)
    mount_ui(app)

    @app.get("/health", summary="Liveness, and whether the memory database answers")
    async def health(request: Request) -> Any:
        runtime: AppRuntime = request.app.state.runtime
        try:
            async with runtime.pool.connection(timeout=5) as conn:
                await conn.execute("SELECT 1")
        except Exception as error:
            api_error = await api_error_for(error, runtime.target)
            metrics.count_error(api_error.code)
            body = {"status": "unhealthy", **error_body(api_error.code, api_error.message)}
            return JSONResponse(body, status_code=503)
        return {"status": "healthy"}

    @app.get("/api/me", summary="Who the server thinks the caller is")
    async def me(request: Request) -> dict[str, str]:
        return {"user": caller_id(request, request.app.state.runtime.settings)}

    @app.get("/agent/info", summary="What this agent is")
    async def agent_info(request: Request) -> dict[str, Any]:
        runtime: AppRuntime = request.app.state.runtime
        return {
            "name": AGENT_NAME,
            "use_case": "agent",
            "agent_api": "responses",
            "version": __version__,
            "model_backend": runtime.settings.model_backend.value,
            "model": runtime.model_name,
            "memory": {
                "database": runtime.target.kind.value,
                "location": runtime.target.location,
                "server_version": runtime.server_version,
                "checkpoint_schema": runtime.settings.checkpoint_schema,
            },
            # Which server process answered, and its share of the database's connections.
            "process": {
                "pid": os.getpid(),
                "workers": runtime.settings.app_workers,
                "pool_max_size": runtime.pool.max_size,
            },
        }

    return app
