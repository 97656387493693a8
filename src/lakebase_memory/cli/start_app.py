"""`start-app`: the agent server and its memory on one port."""

from __future__ import annotations

import logging
from typing import Annotated

import psycopg
import typer
import uvicorn
from fastapi import FastAPI
from psycopg_pool import PoolTimeout

from lakebase_memory.agent.models.local_install import install_local_engine, local_engine_installed
from lakebase_memory.config import ModelBackend, Settings, load_settings
from lakebase_memory.errors import LakebaseMemoryError
from lakebase_memory.server import create_app
from lakebase_memory.server.runtime import AppRuntime

LOCAL_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class _Server(uvicorn.Server):
    """Opens the runtime before serving, so a start-up failure is one clear line, not a
    traceback, and prints the URL once the socket really accepts connections."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, settings: Settings, url: str) -> None:
        super().__init__(config)
        self._app = app
        self._settings = settings
        self._url = url

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        try:
            self._app.state.runtime = await AppRuntime.start(self._settings)
        except (LakebaseMemoryError, psycopg.Error, PoolTimeout, OSError) as error:
            typer.echo(f"error: {error}", err=True)
            self.should_exit = True  # uvicorn then returns without serving
            return
        try:
            await super().startup(sockets)
        except BaseException:
            # uvicorn exits from here when it cannot bind: close what we opened first, so no
            # embedded database is left running.
            await self._app.state.runtime.close()
            raise
        if self.started:
            typer.echo(f"lakebase-memory is ready at {self._url}  (Ctrl-C stops it)")

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[override]
        await super().shutdown(sockets)
        runtime: AppRuntime | None = getattr(self._app.state, "runtime", None)
        if runtime is not None:
            await runtime.close()


def start(
    host: Annotated[str | None, typer.Option(help="Interface to bind [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind [8000].")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Start the agent server with durable thread memory."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    if settings.model_backend is ModelBackend.LOCAL and not local_engine_installed():
        try:
            install_local_engine(typer.echo)
        except LakebaseMemoryError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
    if settings.on_databricks_app:
        # Databricks Apps route traffic to DATABRICKS_APP_PORT on the container's interfaces.
        host = host or "0.0.0.0"
        port = port or settings.databricks_app_port or DEFAULT_PORT
    host = host or LOCAL_HOST
    port = port or DEFAULT_PORT
    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower())
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    server = _Server(config, app, settings, f"http://{shown_host}:{port}/")
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C after its graceful shutdown; the lifespan (pool, embedded
        # database) has closed by then, so this is a clean stop.
        typer.echo("lakebase-memory stopped")
    if not server.started:
        raise typer.Exit(1)  # start-up failed; the reason is printed above


def main() -> None:
    typer.run(start)
