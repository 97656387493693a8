"""Where a client's connections come from: a pool you give it, or one it opens on Lakebase
through the project's own connector (instance or endpoint lookup, the caller's identity,
database credentials minted and renewed), or on a database target the CLI resolved.

The login is tried once before the pool opens, so that a refused login reports its cause
("role ... does not exist") at once instead of as a pool timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from lakebase_memory.config import Settings, load_settings
from lakebase_memory.database.lakebase import LakebaseConnector, lakebase_spec
from lakebase_memory.database.targets import DatabaseTarget
from lakebase_memory.errors import DatabaseUnavailableError

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

# The reference pool's settings: min 1, max 10, 30 s wait, autocommit, dict rows, keepalives.
POOL_DEFAULTS: dict[str, Any] = {"min_size": 1, "max_size": 10, "timeout": 30.0}
CONNECTION_DEFAULTS: dict[str, Any] = {
    "autocommit": True,
    "row_factory": dict_row,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 5,
}
POOL_NAME = "lakebase-memory-access"

BOTH = (
    "Provide either 'pool' or connection parameters "
    "('instance_name', 'autoscaling_endpoint', or 'project'/'branch'), not both."
)
NEITHER = (
    "Must provide 'pool', 'instance_name' (provisioned), "
    "'autoscaling_endpoint', or 'branch' (autoscaling)."
)
PROJECT_AND_BRANCH = (
    "Both 'project' and 'branch' are required to use a Lakebase autoscaling instance. "
    "Please specify both parameters (or 'branch' as projects/<project>/branches/<branch>)."
)


class SyncPool(Protocol):
    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]: ...


class AsyncPool(Protocol):
    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]: ...


@dataclass(frozen=True)
class LakebaseParams:
    """The reference's connection parameters (one of the three forms)."""

    instance_name: str | None = None
    autoscaling_endpoint: str | None = None
    project: str | None = None
    branch: str | None = None

    @property
    def given(self) -> bool:
        return any(
            v is not None
            for v in (self.instance_name, self.autoscaling_endpoint, self.project, self.branch)
        )


def check_connection_args(pool: object, params: LakebaseParams) -> None:
    """The reference SDK's constructor validation, with its texts."""
    if pool is not None and params.given:
        raise ValueError(BOTH)
    if pool is None and not params.given:
        raise ValueError(NEITHER)
    autoscaling = (params.autoscaling_endpoint, params.project, params.branch)
    if params.instance_name is not None and any(v is not None for v in autoscaling):
        raise ValueError(
            "Cannot provide 'instance_name' (provisioned) together with autoscaling parameters "
            "('autoscaling_endpoint', 'project', 'branch'). Choose one mode."
        )
    if params.autoscaling_endpoint is not None and (params.project or params.branch):
        raise ValueError(
            "Cannot provide 'autoscaling_endpoint' together with 'project' or 'branch'. "
            "Use one autoscaling method."
        )
    if params.project is not None and params.branch is None:
        raise ValueError(PROJECT_AND_BRANCH)
    full_branch = params.branch is not None and params.branch.startswith("projects/")
    if params.branch is not None and params.project is None and not full_branch:
        raise ValueError(PROJECT_AND_BRANCH)
    for name, value in vars(params).items():
        if value is not None and not str(value).strip():
            raise ValueError(f"'{name}' cannot be empty.")


def lakebase_connector(
    params: LakebaseParams,
    *,
    settings: Settings | None = None,
    workspace_client: WorkspaceClient | None = None,
) -> LakebaseConnector:
    """The project's connector for these parameters, resolved (blocking SDK calls).

    Databricks authentication, PGPORT/PGDATABASE/PGSSLMODE and timeouts come from the
    settings (environment, `.env.local`, `.env`); the target comes from `params` alone.
    """
    base = settings if settings is not None else load_settings()
    project, branch = params.project, params.branch
    if branch is not None and project is None:  # a full branch path: projects/p/branches/b
        project = branch.split("/")[1]
    chosen = base.model_copy(
        update={
            "lakebase_instance_name": params.instance_name,
            "lakebase_autoscaling_endpoint": params.autoscaling_endpoint,
            "lakebase_autoscaling_project": project,
            "lakebase_autoscaling_branch": branch,
            "database_url": None,
        }
    )
    spec = lakebase_spec(chosen)
    assert spec is not None
    connector = LakebaseConnector(spec, chosen, workspace_client)
    connector.resolve()
    return connector


def _explain(
    connector: LakebaseConnector | None, target: DatabaseTarget | None
) -> Callable[[BaseException], str]:
    if connector is not None:
        return connector.explain_login_failure
    assert target is not None
    return target.explain


def open_sync_pool(
    conninfo: str,
    password: Callable[[], str] | None,
    explain: Callable[[BaseException], str],
    **pool_kwargs: Any,
) -> ConnectionPool[psycopg.Connection[Any]]:
    def kwargs() -> dict[str, Any]:
        extra = {"password": password()} if password is not None else {}
        return {**CONNECTION_DEFAULTS, **extra}

    try:
        with psycopg.connect(conninfo, **kwargs()):
            pass
    except psycopg.OperationalError as error:
        raise DatabaseUnavailableError(explain(error)) from error
    options = {**POOL_DEFAULTS, "name": POOL_NAME, **pool_kwargs}
    return ConnectionPool(conninfo, kwargs=kwargs, open=True, **options)


async def open_async_pool(
    conninfo: str,
    password: Callable[[], Any] | None,
    explain: Callable[[BaseException], str],
    **pool_kwargs: Any,
) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    async def kwargs() -> dict[str, Any]:
        extra = {"password": await password()} if password is not None else {}
        return {**CONNECTION_DEFAULTS, **extra}

    try:
        async with await psycopg.AsyncConnection.connect(conninfo, **(await kwargs())):
            pass
    except psycopg.OperationalError as error:
        raise DatabaseUnavailableError(explain(error)) from error
    options = {**POOL_DEFAULTS, "name": POOL_NAME, **pool_kwargs}
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
        conninfo, kwargs=kwargs, open=False, **options
    )
    await pool.open()
    return pool


def sync_pool_for(
    *,
    connector: LakebaseConnector | None = None,
    target: DatabaseTarget | None = None,
    **pool_kwargs: Any,
) -> ConnectionPool[psycopg.Connection[Any]]:
    """A sync pool on a resolved connector, or on a target from `open_target`."""
    if connector is None and target is not None:
        connector = target.lakebase
    conninfo = connector.conninfo() if connector is not None else _target_conninfo(target)
    password = connector.password_blocking if connector is not None else None
    return open_sync_pool(conninfo, password, _explain(connector, target), **pool_kwargs)


async def async_pool_for(
    *,
    connector: LakebaseConnector | None = None,
    target: DatabaseTarget | None = None,
    **pool_kwargs: Any,
) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    if connector is None and target is not None:
        connector = target.lakebase
    conninfo = connector.conninfo() if connector is not None else _target_conninfo(target)
    password = connector.password if connector is not None else None
    return await open_async_pool(conninfo, password, _explain(connector, target), **pool_kwargs)


def _target_conninfo(target: DatabaseTarget | None) -> str:
    assert target is not None, "a connector or a target is needed"
    return target.conninfo
