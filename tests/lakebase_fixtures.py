"""Fixtures for tests against the local Lakebase (loaded from conftest.py's `pytest_plugins`)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.credentials_provider import CredentialsProvider, CredentialsStrategy

from conftest import make_scratch_dir
from lakebase_memory.local_lakebase import Identity, LocalLakebase

# The SDK retries an unreachable host for 300 s by default; a test should fail fast instead.
SDK_RETRY_TIMEOUT = 10


@pytest.fixture(scope="session")
def local_lakebase() -> Iterator[LocalLakebase]:
    """One local Lakebase for the session, in a scratch folder (see `make_scratch_dir`)."""
    path = make_scratch_dir()
    lakebase = LocalLakebase(path / "local-lakebase")
    lakebase.start()
    yield lakebase
    lakebase.stop()
    shutil.rmtree(path, ignore_errors=True)


def workspace_client(lakebase: LocalLakebase, who: Identity | str | None = None) -> WorkspaceClient:
    """A real SDK client for an identity (default: the owner) or a raw token, with a PAT only:
    `auth_type="pat"` keeps DATABRICKS_* variables and ~/.databrickscfg of the machine out."""
    token = lakebase.owner_token if who is None else getattr(who, "token", who)
    config = Config(
        host=lakebase.host, token=token, auth_type="pat", retry_timeout_seconds=SDK_RETRY_TIMEOUT
    )
    return WorkspaceClient(config=config)


def oauth_workspace_client(lakebase: LocalLakebase, principal: Identity) -> WorkspaceClient:
    """An SDK client logged in as a service principal with OAuth M2M, as a deployed app is."""
    config = Config(
        host=lakebase.host,
        client_id=principal.name,
        client_secret=principal.client_secret,
        auth_type="oauth-m2m",
        retry_timeout_seconds=SDK_RETRY_TIMEOUT,
    )
    return WorkspaceClient(config=config)


class _NoCredentials(CredentialsStrategy):
    """Sends no Authorization header at all."""

    def auth_type(self) -> str:
        return "none"

    def __call__(self, cfg: Config) -> CredentialsProvider:
        return lambda: {}


def anonymous_workspace_client(lakebase: LocalLakebase) -> WorkspaceClient:
    config = Config(
        host=lakebase.host,
        credentials_strategy=_NoCredentials(),
        retry_timeout_seconds=SDK_RETRY_TIMEOUT,
    )
    return WorkspaceClient(config=config)


@pytest.fixture
def sdk_for(local_lakebase: LocalLakebase) -> Callable[..., WorkspaceClient]:
    """sdk_for(identity_or_token=None): a WorkspaceClient on the session's local Lakebase."""

    def make(who: Identity | str | None = None) -> WorkspaceClient:
        return workspace_client(local_lakebase, who)

    return make


@pytest.fixture
def short_token_ttl(local_lakebase: LocalLakebase) -> Iterator[Callable[[float], None]]:
    """short_token_ttl(seconds): new database credentials live that long, for this test only."""
    original = local_lakebase.token_ttl

    def set_ttl(seconds: float) -> None:
        local_lakebase.token_ttl = seconds

    yield set_ttl
    local_lakebase.token_ttl = original


@pytest.fixture
def empty_credentials(local_lakebase: LocalLakebase) -> Iterator[None]:
    """Database credentials come back without a token (`Workspace.empty_credentials`), for this
    test only."""
    local_lakebase.workspace.empty_credentials = True
    yield
    local_lakebase.workspace.empty_credentials = False


@pytest.fixture
def endpoint_initializing(local_lakebase: LocalLakebase) -> Iterator[None]:
    """The endpoint is still being created: state INIT, no host (`Workspace.
    endpoint_initializing`), for this test only."""
    local_lakebase.workspace.endpoint_initializing = True
    yield
    local_lakebase.workspace.endpoint_initializing = False
