"""`start-app`: the agent server and its memory on one port."""

from __future__ import annotations

import logging
from typing import Annotated

import psycopg
import typer
import uvicorn
from psycopg_pool import PoolTimeout

from lakebase_memory.agent.models.local_install import install_local_engine, local_engine_installed
from lakebase_memory.config import ModelBackend, load_settings
from lakebase_memory.errors import LakebaseMemoryError
from lakebase_memory.server import create_app
from lakebase_memory.server.process import AppServer, app_url
from lakebase_memory.server.workers import serve_workers

LOCAL_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def start(
    host: Annotated[str | None, typer.Option(help="Interface to bind [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind [8000].")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Server processes sharing the port, each with its own share of the "
            "database's connections [APP_WORKERS, else 1].",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Start the agent server with durable thread memory."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    if workers is not None:
        settings = settings.model_copy(update={"app_workers": workers})
    if settings.on_databricks_app:
        # Databricks Apps route traffic to DATABRICKS_APP_PORT on the container's interfaces.
        host = host or "0.0.0.0"
        port = port or settings.databricks_app_port or DEFAULT_PORT
    host = host or LOCAL_HOST
    port = port or DEFAULT_PORT
    if settings.app_workers > 1:
        try:
            served = serve_workers(settings, host, port, log_level)
        except (LakebaseMemoryError, psycopg.Error, PoolTimeout, OSError) as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
        if not served:
            raise typer.Exit(1)
        return
    if settings.model_backend is ModelBackend.LOCAL and not local_engine_installed():
        try:
            install_local_engine(typer.echo)
        except LakebaseMemoryError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(1) from None
    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower())
    url = app_url(host, port)
    server = AppServer(
        config, app, settings,
        on_ready=lambda: typer.echo(f"lakebase-memory is ready at {url}  (Ctrl-C stops it)"),
    )  # fmt: skip
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
