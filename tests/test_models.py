"""Model back-ends chosen by MODEL_BACKEND: openai and databricks against a real
OpenAI-compatible HTTP server (a fake one, run here), configuration errors, a failing model,
and the offline llama.cpp model."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult

from conftest import (
    ROOT,
    LiveServer,
    ThreadedServer,
    answer_text,
    free_port,
    make_settings,
    say,
    sse_events,
)
from lakebase_memory.agent import build_model
from lakebase_memory.agent.models.remote import DatabricksAuth
from lakebase_memory.errors import ConfigurationError

SYSTEM_PROMPT = "You are a test assistant."

# Settings read the process environment too: none of these may leak in from the outside.
MODEL_ENV = (
    "MODEL_BACKEND",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_MODEL",
    "OPENAI_API_BASE",
    "OPENAI_ORGANIZATION",
    "LLM_ENDPOINT_NAME",
    "LOCAL_MODEL_PATH",
    "MAX_OUTPUT_TOKENS",
    "SYSTEM_PROMPT",
)


@pytest.fixture(autouse=True)
def clean_model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MODEL_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_databricks_auth(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DATABRICKS_* variables and a HOME without ~/.databrickscfg."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ARM_", "AZURE_", "GOOGLE_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


# --- a fake OpenAI-compatible server -----------------------------------------------------


def fake_reply(model: str, messages: list[dict[str, Any]]) -> str:
    """Deterministic: shows which model was asked and how much history it was given."""
    said = [m["content"] for m in messages if m.get("role") == "user"]
    first = said[0] if said else ""
    return f'Fake {model} got {len(said)} user messages; the first was "{first}".'


def pieces(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


class FakeOpenAI(ThreadedServer):
    """POST /v1/chat/completions and /serving-endpoints/chat/completions on a real socket.

    Records every completion request (path, Authorization header, body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        app = FastAPI()
        app.add_api_route("/v1/chat/completions", self._complete, methods=["POST"])
        app.add_api_route("/serving-endpoints/chat/completions", self._complete, methods=["POST"])
        app.add_api_route("/.well-known/databricks-config", self._no_metadata, methods=["GET"])
        super().__init__(app)

    async def _no_metadata(self) -> JSONResponse:
        return JSONResponse(
            {"error_code": "NOT_FOUND", "message": "no host metadata"}, status_code=404
        )

    async def _complete(self, request: Request) -> Any:
        body = await request.json()
        with self._lock:
            self.requests.append(
                {
                    "path": request.url.path,
                    "authorization": request.headers.get("authorization"),
                    "body": body,
                }
            )
        model = body["model"]
        text = fake_reply(model, body["messages"])
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not body.get("stream"):
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            }

        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n"

        async def frames() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""}, None)
            for piece in pieces(text):
                yield chunk({"content": piece}, None)
            yield chunk({}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                }
                yield f"data: {json.dumps(usage)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream")

    def completions(self, path: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if path is None or r["path"] == path]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def conversation(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in body["messages"]]


def deltas_of(events: list[dict | str]) -> list[str]:
    return [
        e["delta"]
        for e in events
        if isinstance(e, dict) and e["type"] == "response.output_text.delta"
    ]


def test_the_fake_answers_plain_and_streamed_requests(fake: FakeOpenAI) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]
    with httpx.Client(base_url=fake.url, timeout=10) as http:
        plain = http.post("/v1/chat/completions", json={"model": "x", "messages": messages})
        streamed = http.post(
            "/v1/chat/completions", json={"model": "x", "messages": messages, "stream": True}
        )
        probe = http.get("/.well-known/databricks-config")
    expected = 'Fake x got 2 user messages; the first was "hi".'
    assert plain.json()["choices"][0]["message"]["content"] == expected
    events = sse_events(streamed)
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])  # type: ignore[index]
    assert text == expected
    assert probe.status_code == 404 and probe.json()["error_code"] == "NOT_FOUND"
    assert len(fake.completions("/v1/chat/completions")) == 2


# --- MODEL_BACKEND=openai ------------------------------------------------------------------


def openai_settings(database: str, fake: FakeOpenAI, **overrides: object):
    values: dict[str, object] = {
        "model_backend": "openai",
        "openai_base_url": f"{fake.url}/v1",
        "openai_api_key": "k",
        "openai_model": "m",
        "system_prompt": SYSTEM_PROMPT,
    }
    values.update(overrides)
    return make_settings(database, **values)


def test_openai_backend_sends_the_whole_history(
    database: str, fake: FakeOpenAI, serve: Callable[..., LiveServer]
) -> None:
    server = serve(openai_settings(database, fake, max_output_tokens=40))
    with server.client() as client:
        first = answer_text(say(client, "My name is Ada.", "oa-thread"))
        second = answer_text(say(client, "What is my name?", "oa-thread"))
        info = client.get("/agent/info").json()
        messages = client.get("/api/threads/oa-thread").json()["messages"]

    assert first == 'Fake m got 1 user messages; the first was "My name is Ada.".'
    assert second == 'Fake m got 2 user messages; the first was "My name is Ada.".'
    calls = fake.completions("/v1/chat/completions")
    assert len(calls) == 2
    assert all(c["authorization"] == "Bearer k" for c in calls)
    assert all(c["body"]["model"] == "m" for c in calls)
    assert all(c["body"]["max_completion_tokens"] == 40 for c in calls)
    assert conversation(calls[0]["body"]) == [
        ("system", SYSTEM_PROMPT),
        ("user", "My name is Ada."),
    ]
    assert conversation(calls[1]["body"]) == [
        ("system", SYSTEM_PROMPT),
        ("user", "My name is Ada."),
        ("assistant", first),
        ("user", "What is my name?"),
    ]
    # The thread stores the conversation only; the system prompt is added per call.
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "My name is Ada."),
        ("assistant", first),
        ("user", "What is my name?"),
        ("assistant", second),
    ]
    assert info["model_backend"] == "openai"


def test_openai_backend_streams_the_fake_deltas(
    database: str, fake: FakeOpenAI, serve: Callable[..., LiveServer]
) -> None:
    server = serve(openai_settings(database, fake))
    with server.client() as client:
        response = client.post(
            "/invocations",
            json={
                "input": [{"role": "user", "content": "stream it"}],
                "stream": True,
                "custom_inputs": {"thread_id": "oa-stream"},
            },
        )
        follow = answer_text(say(client, "and then", "oa-stream"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    assert isinstance(events[-2], dict) and events[-2]["type"] == "response.completed"
    expected = 'Fake m got 1 user messages; the first was "stream it".'
    deltas = deltas_of(events)
    assert deltas == pieces(expected)  # the fake's chunks, one delta each
    assert events[-2]["response"]["output"][0]["content"][0]["text"] == expected
    assert fake.completions()[0]["body"]["stream"] is True
    assert follow == 'Fake m got 2 user messages; the first was "stream it".'


def test_openai_backend_without_a_key_needs_only_a_base_url(fake: FakeOpenAI) -> None:
    settings = make_settings(
        "postgresql://unused",
        model_backend="openai",
        openai_base_url=f"{fake.url}/v1",
        openai_model="local-model",
    )
    model = build_model(settings)
    reply = model.invoke([HumanMessage("ping")])
    assert reply.content == 'Fake local-model got 1 user messages; the first was "ping".'
    (call,) = fake.completions("/v1/chat/completions")
    assert call["authorization"] == "Bearer not-needed"


# --- MODEL_BACKEND=databricks ----------------------------------------------------------------


def test_databricks_backend_calls_the_serving_endpoint(
    database: str,
    fake: FakeOpenAI,
    serve: Callable[..., LiveServer],
    no_databricks_auth: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test")
    settings = make_settings(
        database,
        model_backend="databricks",
        llm_endpoint_name="my-endpoint",
        system_prompt=SYSTEM_PROMPT,
    )
    server = serve(settings)
    with server.client() as client:
        first = answer_text(say(client, "hello endpoint", "dbx"))
        streamed = client.post(
            "/invocations",
            json={"input": "second", "stream": True, "custom_inputs": {"thread_id": "dbx"}},
        )
    assert first == 'Fake my-endpoint got 1 user messages; the first was "hello endpoint".'
    expected = 'Fake my-endpoint got 2 user messages; the first was "hello endpoint".'
    assert "".join(deltas_of(sse_events(streamed))) == expected
    calls = fake.completions("/serving-endpoints/chat/completions")
    assert len(calls) == 2
    assert fake.completions("/v1/chat/completions") == []
    assert all(c["authorization"] == "Bearer dapi-test" for c in calls)
    assert all(c["body"]["model"] == "my-endpoint" for c in calls)
    assert conversation(calls[1]["body"]) == [
        ("system", SYSTEM_PROMPT),
        ("user", "hello endpoint"),
        ("assistant", first),
        ("user", "second"),
    ]
    # The HTTP clients made for the endpoint are the server's: closed when it stops.
    model = server.app.state.runtime.model
    assert not model.http_async_client.is_closed
    server.__exit__()
    assert model.http_client.is_closed and model.http_async_client.is_closed


def test_a_slow_token_renewal_does_not_block_the_event_loop(fake: FakeOpenAI) -> None:
    class RenewingConfig:
        """The SDK's Config at the moment it renews an OAuth token: a blocking HTTP call."""

        def authenticate(self) -> dict[str, str]:
            time.sleep(0.5)
            return {"Authorization": "Bearer renewed"}

    async def call_while_ticking() -> tuple[float, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = time.perf_counter()
        async with httpx.AsyncClient(auth=DatabricksAuth(RenewingConfig())) as http:
            response = await http.post(
                f"{fake.url}/serving-endpoints/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )
        took = time.perf_counter() - started
        ticker.cancel()
        assert response.status_code == 200
        return took, ticks

    took, ticks = asyncio.run(call_while_ticking())
    assert took >= 0.5  # the renewal happened inside this request
    # Other work ran meanwhile: up to 50 ticks of 10 ms, at most 1 with the loop blocked.
    assert ticks >= 10
    assert fake.completions()[-1]["authorization"] == "Bearer renewed"


# --- configuration errors -------------------------------------------------------------------


def test_openai_without_a_model_name_is_a_configuration_error() -> None:
    settings = make_settings(
        "postgresql://unused", model_backend="openai", openai_api_key="k", openai_base_url=None
    )
    with pytest.raises(ConfigurationError, match="OPENAI_MODEL"):
        build_model(settings)


def test_openai_without_key_or_base_url_is_a_configuration_error() -> None:
    settings = make_settings("postgresql://unused", model_backend="openai", openai_model="m")
    with pytest.raises(ConfigurationError) as caught:
        build_model(settings)
    assert "OPENAI_API_KEY" in str(caught.value)
    assert "OPENAI_BASE_URL" in str(caught.value)


def test_databricks_without_an_endpoint_is_a_configuration_error(
    no_databricks_auth: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test")
    settings = make_settings("postgresql://unused", model_backend="databricks")
    with pytest.raises(ConfigurationError, match="LLM_ENDPOINT_NAME"):
        build_model(settings)


def test_databricks_without_auth_is_a_configuration_error(no_databricks_auth: None) -> None:
    settings = make_settings(
        "postgresql://unused", model_backend="databricks", llm_endpoint_name="my-endpoint"
    )
    with pytest.raises(ConfigurationError) as caught:
        build_model(settings)
    message = str(caught.value)
    assert "Databricks authentication is not configured" in message
    assert "DATABRICKS_HOST" in message and "DATABRICKS_TOKEN" in message


@pytest.mark.slow
def test_start_app_exits_with_the_configuration_error(database: str, tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv is not None, "uv is not on PATH"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in MODEL_ENV and not k.startswith(("PG", "DATABASE_URL"))
    }
    env.update(MODEL_BACKEND="openai", DATABASE_URL=database)
    # --project finds the app while cwd stays in an empty directory (no .env files read).
    command = [uv, "run", "--no-sync", "--project", str(ROOT), "start-app"]
    result = subprocess.run(
        [*command, "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "MODEL_BACKEND=openai needs OPENAI_MODEL" in output, output
    assert "is ready at" not in output


# --- a model that fails ---------------------------------------------------------------------


class FailingModel(BaseChatModel):
    @property
    def _llm_type(self) -> str:
        return "failing"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise RuntimeError("boom")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise RuntimeError("boom")


def assert_retry_answers_once(database: str, serve: Callable[..., LiveServer], thread: str) -> None:
    """After a failed turn the thread holds the question; a working model answers it once."""
    retry = serve(make_settings(database))  # echo backend, same database
    with retry.client() as client:
        before = client.get(f"/api/threads/{thread}").json()["messages"]
        assert [(m["role"], m["content"]) for m in before] == [("user", "Will you fail?")]
        reply = say(client, "Will you fail?", thread)
        messages = client.get(f"/api/threads/{thread}").json()["messages"]
    assert 'You said: "Will you fail?". You have sent 1 message' in answer_text(reply)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "Will you fail?"
    assert messages[1]["content"] == answer_text(reply)


def test_a_failing_model_is_a_502_and_the_turn_can_be_retried(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    failing = serve(make_settings(database), model=FailingModel())
    with failing.client() as client:
        response = client.post(
            "/invocations",
            json={"input": "Will you fail?", "custom_inputs": {"thread_id": "fail-plain"}},
        )
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "model_error"
    assert "boom" in error["message"]
    assert "Traceback" not in response.text
    failing.__exit__()
    assert_retry_answers_once(database, serve, "fail-plain")


def test_a_failing_model_ends_the_stream_with_an_error_frame(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    failing = serve(make_settings(database), model=FailingModel())
    with failing.client() as client:
        response = client.post(
            "/invocations",
            json={
                "input": "Will you fail?",
                "stream": True,
                "custom_inputs": {"thread_id": "fail-stream"},
            },
        )
    assert response.status_code == 200
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    frame = events[-2]
    assert isinstance(frame, dict)
    assert frame["type"] == "error"
    assert frame["code"] == "model_error"
    assert "boom" in frame["error"]
    assert frame["custom_outputs"] == {"thread_id": "fail-stream"}
    assert not any(isinstance(e, dict) and e["type"] == "response.completed" for e in events)
    failing.__exit__()
    assert_retry_answers_once(database, serve, "fail-stream")
