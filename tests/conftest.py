"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh database per test,
and the app served by a real uvicorn HTTP server on a free port."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

import httpx
import psycopg
import pytest
import uvicorn
from langchain_core.language_models import BaseChatModel
from psycopg import sql
from psycopg.conninfo import make_conninfo

from lakebase_memory.config import Settings
from lakebase_memory.database import EmbeddedPostgres
from lakebase_memory.server import create_app

pytest_plugins = ["lakebase_fixtures", "saver_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
# Words of the long messages of the context-window tests (plain English, ~1.3 tokens each).
DIARY_WORDS = [
    "garden", "river", "window", "morning", "table", "letter", "bridge", "forest", "candle",
    "music", "winter", "ocean", "market", "journey", "lantern", "meadow", "harbor", "village",
    "mountain", "quiet", "evening",
]  # fmt: skip
ARTIFACTS = ROOT / "test-artifacts"


def make_scratch_dir() -> Path:
    # Not under pytest's tmp_path: pytest makes its root private (0700) whenever a session
    # starts, and the embedded server's own system user must reach its data folder.
    return Path(tempfile.mkdtemp(prefix="lakebase-memory-test-"))


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A fresh folder the embedded PostgreSQL's system user can reach."""
    path = make_scratch_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """Superuser conninfo of the session's embedded PostgreSQL."""
    path = make_scratch_dir()
    server = EmbeddedPostgres(path / "data")
    conninfo = server.start()
    yield conninfo
    server.stop()
    shutil.rmtree(path, ignore_errors=True)


def create_database(admin: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(admin, dbname=name)


@pytest.fixture
def database(pg_admin: str) -> str:
    """Conninfo of a new, empty database for this test."""
    return create_database(pg_admin)


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "model_backend": "echo",
        "db_pool_timeout": 3.0,
        "db_connect_timeout": 3,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedServer:
    """An ASGI app on a real socket, in a background thread with its own event loop."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{type(self).__name__} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class LiveServer(ThreadedServer):
    """The app, with its settings and model."""

    def __init__(self, settings: Settings, model: BaseChatModel | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings, model=model)
        super().__init__(self.app)

    def client(self, **kwargs: object) -> httpx.Client:
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveServer]]:
    """serve(settings, model=None) starts a live server, stopped at the end of the test."""
    started: list[LiveServer] = []

    def start(settings: Settings, model: BaseChatModel | None = None) -> LiveServer:
        server = LiveServer(settings, model).__enter__()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.__exit__()


@pytest.fixture
def server(database: str, serve: Callable[..., LiveServer]) -> LiveServer:
    return serve(make_settings(database))


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def say(client: httpx.Client, text: str, thread_id: str | None = None, **extra: object) -> dict:
    body: dict[str, object] = {"input": [{"role": "user", "content": text}], **extra}
    if thread_id is not None:
        body["custom_inputs"] = {"thread_id": thread_id}
    response = client.post("/invocations", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def answer_text(reply: dict) -> str:
    return "".join(
        part["text"]
        for item in reply["output"]
        if item["type"] == "message"
        for part in item["content"]
    )


def sse_events(response: httpx.Response) -> list[dict | str]:
    """Parse an SSE body into JSON events, with the final '[DONE]' kept as a string."""
    import json

    events: list[dict | str] = []
    for frame in response.text.split("\n\n"):
        if not frame.strip():
            continue
        assert frame.startswith("data: "), frame
        payload = frame[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events
