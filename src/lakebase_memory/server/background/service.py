"""What a server process holds for background responses, opened with its runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lakebase_memory.config import Settings
from lakebase_memory.server.background.recovery import ResponseMaintenance
from lakebase_memory.server.background.rows import ResponseRows
from lakebase_memory.server.background.runner import BackgroundRunner
from lakebase_memory.server.background.subscriptions import Wakeups
from lakebase_memory.server.runtime import AppRuntime


@dataclass
class BackgroundResponses:
    rows: ResponseRows
    wakeups: Wakeups
    runner: BackgroundRunner
    maintenance: ResponseMaintenance

    @classmethod
    def open(cls, runtime: AppRuntime) -> BackgroundResponses:
        """Start this process's sweeper (its first sweep runs at once)."""
        rows = ResponseRows(runtime.pool)
        wakeups = Wakeups()
        runner = BackgroundRunner(runtime, rows, wakeups)
        maintenance = ResponseMaintenance(rows, runtime.settings).start()
        return cls(rows, wakeups, runner, maintenance)

    async def close(self) -> None:
        await self.maintenance.stop()


async def start_runtime(settings: Settings, **kwargs: Any) -> AppRuntime:
    """A server process's runtime (`AppRuntime.start`) with its background responses: built
    on the runtime and the turns, so opened here rather than by the runtime itself."""
    runtime = await AppRuntime.start(settings, **kwargs)
    runtime.responses = BackgroundResponses.open(runtime)
    return runtime
