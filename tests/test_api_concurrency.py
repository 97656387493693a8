"""Two requests on one thread at once: the second gets 409 `thread_busy`, nothing interleaves.
Requests on different threads run at the same time (no process-wide lock)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from conftest import answer_text, make_settings
from test_api_errors import error_of


class GatedModel(BaseChatModel):
    """Answers once `release` is set (set from the test's thread), saying how many it saw."""

    release: Any
    started: Any
    inside: list[int] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "gated"

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> ChatResult:
        self.started.set()
        self.inside.append(1)
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        humans = sum(m.type == "human" for m in messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(f"saw {humans}"))])


def ask(client: httpx.Client, text: str, thread_id: str) -> httpx.Response:
    body = {"input": text, "custom_inputs": {"thread_id": thread_id}}
    return client.post("/invocations", json=body, timeout=30)


def test_a_second_request_on_a_busy_thread_gets_409(database: str, serve) -> None:
    model = GatedModel(release=threading.Event(), started=threading.Event())
    server = serve(make_settings(database), model=model)
    with server.client() as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(ask, client, "first", "busy")
        assert model.started.wait(10)
        busy = error_of(ask(client, "second", "busy"), 409)
        assert busy["code"] == "thread_busy"
        assert "wait for it to finish" in busy["message"]
        # The stream endpoint refuses before streaming, with the same status.
        body = {"input": "x", "stream": True, "custom_inputs": {"thread_id": "busy"}}
        assert client.post("/responses", json=body).status_code == 409
        model.release.set()
        assert answer_text(first.result().json()) == "saw 1"
        # Once the first turn is saved, the retry goes ahead and sees it: nothing was lost.
        assert answer_text(ask(client, "second", "busy").json()) == "saw 2"
    messages = client_messages(server, "busy")
    assert messages == ["first", "saw 1", "second", "saw 2"]


def client_messages(server: Any, thread_id: str) -> list[str]:
    with server.client() as client:
        thread = client.get(f"/api/threads/{thread_id}").json()
    return [m["content"] for m in thread["messages"]]


def test_turns_on_different_threads_run_together(database: str, serve) -> None:
    release = threading.Event()
    model = GatedModel(release=release, started=threading.Event())
    server = serve(make_settings(database), model=model)
    with server.client() as client, ThreadPoolExecutor(3) as pool:
        replies = [pool.submit(ask, client, "hi", f"parallel-{i}") for i in range(3)]
        # All three turns are inside the model at once before any is allowed to finish:
        # serialised turns would never get there.
        for _ in range(500):
            if len(model.inside) == 3:
                break
            threading.Event().wait(0.02)
        assert len(model.inside) == 3
        release.set()
        assert [answer_text(r.result().json()) for r in replies] == ["saw 1"] * 3


def test_a_client_that_goes_away_mid_answer_still_gets_its_turn_saved(database: str, serve) -> None:
    """The turn runs on without its client: question and answer are saved, the lease freed."""
    model = GatedModel(release=threading.Event(), started=threading.Event())
    server = serve(make_settings(database), model=model)
    body = {"input": "first", "stream": True, "custom_inputs": {"thread_id": "gone"}}
    with server.client() as client:
        with client.stream("POST", "/responses", json=body) as response:
            assert response.status_code == 200
            assert model.started.wait(10)
        # The connection is closed; the model answers afterwards.
        model.release.set()
        for _ in range(200):
            messages = client.get("/api/threads/gone").json().get("messages", [])
            if len(messages) == 2:
                break
            threading.Event().wait(0.05)
        assert [m["content"] for m in messages] == ["first", "saw 1"]
        # Not busy: the lease went with the turn's end, not with the client.
        assert answer_text(ask(client, "second", "gone").json()) == "saw 2"
