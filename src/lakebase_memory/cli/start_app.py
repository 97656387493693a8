"""`start-app`: the agent server and its memory on one port."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
import uvicorn

from lakebase_memory.config import load_settings
from lakebase_memory.errors import LakebaseMemoryError
from lakebase_memory.server import create_app

LOCAL_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class _Server(uvicorn.Server):
    """Prints the URL once the socket really accepts connections."""

    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self._url = url

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)
        if self.started:
            typer.echo(f"lakebase-memory is ready at {self._url}  (Ctrl-C stops it)")


def start(
    host: Annotated[str | None, typer.Option(help="Interface to bind [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind [8000].")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Start the agent server with durable thread memory."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    if settings.on_databricks_app:
        # Databricks Apps route traffic to DATABRICKS_APP_PORT on the container's interfaces.
        host = host or "0.0.0.0"
        port = port or settings.databricks_app_port or DEFAULT_PORT
    host = host or LOCAL_HOST
    port = port or DEFAULT_PORT
    try:
        app = create_app(settings)
    except LakebaseMemoryError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower())
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    server = _Server(config, f"http://{shown_host}:{port}/")
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C after its graceful shutdown; the lifespan (pool, embedded
        # database) has closed by then, so this is a clean stop.
        typer.echo("lakebase-memory stopped")
    if not server.started:
        # The lifespan failed (its error is already logged): say so in the exit status.
        raise typer.Exit(1)


def main() -> None:
    typer.run(start)
