"""What the checks learn along the way and hand on to the checks after them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import DictRow

from lakebase_memory.config import Settings
from lakebase_memory.database.lakebase import LakebaseConnector, LakebaseSpec
from lakebase_memory.database.targets import DatabaseTarget
from lakebase_memory.diagnosis.result import CheckResult

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient


@dataclass
class Context:
    """Filled in by the checks, in order; each check reads only what earlier ones set."""

    load_settings: Callable[[], Settings]
    settings: Settings | None = None
    spec: LakebaseSpec | None = None  # None: not a Lakebase target
    workspace: WorkspaceClient | None = None
    identity: str | None = None  # who the workspace says we are (current_user.me)
    connector: LakebaseConnector | None = None
    target: DatabaseTarget | None = None
    conn: psycopg.AsyncConnection[DictRow] | None = None
    missing_objects: list[str] = field(default_factory=list)  # schemas and tables not there
    results: dict[str, CheckResult] = field(default_factory=dict)

    @property
    def lakebase_name(self) -> str:
        """The instance or endpoint as the user named it (for the reference texts)."""
        if self.connector is not None:
            return self.connector.name
        if self.spec is not None:
            return self.spec.value
        if self.settings is not None and self.settings.lakebase_instance_name:
            return self.settings.lakebase_instance_name
        return "<instance>"

    async def aclose(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self.conn.close()
        if self.target is not None:
            await asyncio.to_thread(self.target.close)
