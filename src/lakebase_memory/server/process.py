"""One server process: uvicorn serving the app, with the runtime opened around it."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import typer
import uvicorn
from fastapi import FastAPI
from psycopg_pool import PoolTimeout

from lakebase_memory.config import Settings
from lakebase_memory.database import DatabaseTarget
from lakebase_memory.errors import LakebaseMemoryError
from lakebase_memory.server.background import start_runtime
from lakebase_memory.server.runtime import AppRuntime


def app_url(host: str, port: int) -> str:
    """The URL to print for a server bound to `host`:`port`."""
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown_host}:{port}/"


class AppServer(uvicorn.Server):
    """Opens the runtime before serving, so a start-up failure is one clear line, not a
    traceback, and calls `on_ready` once the socket really accepts connections."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: FastAPI,
        settings: Settings,
        on_ready: Callable[[], None],
        target: DatabaseTarget | None = None,
    ) -> None:
        super().__init__(config)
        self._app = app
        self._settings = settings
        self._on_ready = on_ready
        self._target = target  # one already open (a worker's), else opened from the settings

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        try:
            self._app.state.runtime = await start_runtime(self._settings, target=self._target)
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
            self._on_ready()

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[override]
        await super().shutdown(sockets)
        runtime: AppRuntime | None = getattr(self._app.state, "runtime", None)
        if runtime is not None:
            await runtime.close()
