"""Bad input and outages: a 4xx/503 with one JSON error shape, never a traceback."""

from __future__ import annotations

import time

import httpx
import pytest

from conftest import make_settings, say
from lakebase_memory.database import EmbeddedPostgres
from saver_fixtures import CHECKPOINT_TABLES, checkpoint_rows


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    assert "Traceback" not in response.text
    return body["error"]


def test_invalid_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/invocations", content=b'{"input": [', headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in error_of(response, 400)["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": 5}, "input"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input.0"),
        ({"input": [{"role": "user"}]}, "input.0"),
        ({"input": [{"role": "user", "content": 3}]}, "input.0"),
        ({"input": "hi", "stream": "sometimes"}, "stream"),
        ({"input": "hi", "custom_inputs": "t1"}, "custom_inputs"),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{x"}]},
            "input.0",
        ),
        ({}, "input"),
    ],
)
def test_wrong_types_are_422_naming_the_field(client: httpx.Client, body: dict, field: str) -> None:
    error = error_of(client.post("/invocations", json=body), 422)
    assert error["code"] == "invalid_request"
    assert any(d["field"].startswith(field) for d in error["details"]), error


@pytest.mark.parametrize("empty", [[], "", "   "])
def test_empty_input_is_422(client: httpx.Client, empty: object) -> None:
    error = error_of(client.post("/responses", json={"input": empty}), 422)
    assert "input is empty" in error["message"]


def test_oversized_body_is_413(database: str, serve) -> None:
    server = serve(make_settings(database, max_request_bytes=4096))
    big = {"input": "x" * 10_000, "custom_inputs": {"thread_id": "big"}}
    with server.client() as client:
        error = error_of(client.post("/invocations", json=big), 413)
        assert "MAX_REQUEST_BYTES" in error["message"]

        def chunks():  # no Content-Length: counted while it streams in
            yield b'{"input": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        chunked = client.post(
            "/invocations", content=chunks(), headers={"content-type": "application/json"}
        )
        assert error_of(chunked, 413)["code"] == "request_too_large"
        # Nothing was written for the refused requests.
        assert client.get("/api/threads").json()["threads"] == []


def test_unknown_thread_is_404_on_get_and_delete(client: httpx.Client) -> None:
    assert error_of(client.get("/api/threads/nope"), 404)["code"] == "thread_not_found"
    assert error_of(client.delete("/api/threads/nope"), 404)["code"] == "thread_not_found"


def test_bad_cursor_and_limit(client: httpx.Client) -> None:
    assert error_of(client.get("/api/threads?cursor=garbage!"), 400)["code"] == "invalid_cursor"
    assert error_of(client.get("/api/threads?limit=0"), 422)["details"][0]["field"] == "query.limit"


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert error_of(client.get("/nowhere"), 404)["code"] == "not_found"
    assert error_of(client.get("/invocations"), 405)["code"] == "method_not_allowed"


def test_database_outage_is_503_and_recovers(scratch_dir, serve) -> None:
    embedded = EmbeddedPostgres(scratch_dir / "outage")
    conninfo = embedded.start()
    try:
        server = serve(make_settings(conninfo))
        with server.client() as client:
            say(client, "before the outage", "o")
            embedded.stop()  # the server really goes away

            response = client.post(
                "/invocations", json={"input": "during", "custom_inputs": {"thread_id": "o"}}
            )
            error = error_of(response, 503)
            assert error["code"] == "database_unavailable"
            assert "Check that the database is running" in error["message"]
            assert error_of(client.get("/api/threads"), 503)["code"] == "database_unavailable"
            health = client.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "unhealthy"
            stream = client.post(
                "/invocations",
                json={"input": "during", "stream": True, "custom_inputs": {"thread_id": "o"}},
            )
            assert stream.status_code == 503  # failed before the stream began: a plain error

            embedded.start()
            # The pool reconnects in the background, with backoff: wait until it is back.
            deadline = time.monotonic() + 60
            while client.get("/health").status_code != 200:
                assert time.monotonic() < deadline, "the server did not recover"
                time.sleep(0.5)
            reply = client.post(
                "/invocations", json={"input": "after", "custom_inputs": {"thread_id": "o"}}
            )
            assert reply.status_code == 200, reply.text
            messages = client.get("/api/threads/o").json()["messages"]
            assert [m["content"] for m in messages if m["role"] == "user"] == [
                "before the outage",
                "after",
            ]
    finally:
        embedded.stop()


def test_values_the_database_cannot_store_are_422(client: httpx.Client) -> None:
    nul_text = client.post(
        "/invocations", json={"input": [{"role": "user", "content": "a\u0000b"}]}
    )
    assert "NUL" in error_of(nul_text, 422)["message"]
    nul_id = client.post(
        "/invocations", json={"input": "x", "custom_inputs": {"thread_id": "a\u0000"}}
    )
    assert error_of(nul_id, 422)["code"] == "invalid_thread_id"
    long_id = client.post(
        "/invocations", json={"input": "x", "custom_inputs": {"thread_id": "t" * 600}}
    )
    assert "at most 512" in error_of(long_id, 422)["message"]
    assert error_of(client.get("/api/threads/a%00b"), 422)["code"] == "invalid_value"
    assert client.get("/api/threads").json()["threads"] == []  # nothing half-written


def test_a_thread_id_cannot_take_over_another_threads_chat(client: httpx.Client) -> None:
    import uuid

    from lakebase_memory.memory.threads import _DERIVED_ID_NAMESPACE

    squatter = str(uuid.uuid5(_DERIVED_ID_NAMESPACE, "foo"))
    say(client, "first", squatter)
    clash = client.post("/invocations", json={"input": "x", "custom_inputs": {"thread_id": "foo"}})
    assert error_of(clash, 409)["code"] == "thread_conflict"
    upper = squatter.upper()  # another spelling of the same UUID is another thread
    say(client, "other spelling", upper)
    ids = {t["id"] for t in client.get("/api/threads").json()["threads"]}
    assert ids == {squatter, upper}


def test_a_thread_deleted_during_its_turn_stays_deleted(database: str, serve) -> None:
    import asyncio
    import threading

    from lakebase_memory.agent.models.echo import EchoChatModel

    class SlowEcho(EchoChatModel):
        async def _agenerate(self, *args, **kwargs):
            await asyncio.sleep(1.5)
            return await super()._agenerate(*args, **kwargs)

        async def _astream(self, *args, **kwargs):
            await asyncio.sleep(1.5)
            async for chunk in super()._astream(*args, **kwargs):
                yield chunk

    server = serve(make_settings(database), model=SlowEcho())
    with server.client() as client:
        replies: list[httpx.Response] = []
        body = {"input": "late answer", "custom_inputs": {"thread_id": "doomed"}}
        worker = threading.Thread(
            target=lambda: replies.append(client.post("/invocations", json=body))
        )
        worker.start()
        time.sleep(0.7)  # the turn is running: the chat exists, the model is thinking
        assert client.delete("/api/threads/doomed").status_code == 204
        worker.join(timeout=30)
        # The turn's one write is checked against its lease, which went with the thread.
        assert replies and error_of(replies[0], 409)["code"] == "turn_discarded"
        assert "deleted while this turn ran" in error_of(replies[0], 409)["message"]
        assert client.get("/api/threads/doomed").status_code == 404
        assert checkpoint_rows(database, "doomed") == dict.fromkeys(CHECKPOINT_TABLES, 0)
        # Reusing the id starts from nothing.
        assert (
            "You have sent 1 message"
            in client.post(
                "/invocations", json={"input": "new", "custom_inputs": {"thread_id": "doomed"}}
            ).json()["output"][0]["content"][0]["text"]
        )


async def test_pool_timeouts_share_one_login_diagnosis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests timing out on a busy pool must not each open one more connection."""
    import asyncio

    from psycopg_pool import PoolTimeout

    from lakebase_memory.database import DatabaseTarget, TargetKind
    from lakebase_memory.server import errors

    logins: list[int] = []
    real = errors.check_login

    async def counted(target: DatabaseTarget) -> str:
        logins.append(1)
        return await real(target)

    monkeypatch.setattr(errors, "check_login", counted)
    down = DatabaseTarget(
        TargetKind.POSTGRES, "host=/nonexistent-socket-dir port=1 dbname=x", "nowhere"
    )
    answers = await asyncio.gather(*(errors.api_error_for(PoolTimeout(), down) for _ in range(5)))
    answers.append(await errors.api_error_for(PoolTimeout(), down))
    assert logins == [1]
    assert {(a.status, a.code) for a in answers} == {(503, "database_unavailable")}
    assert all("not available" in a.message for a in answers)
    # Another target (another app in the process) is diagnosed on its own.
    other = DatabaseTarget(TargetKind.POSTGRES, down.conninfo, "elsewhere")
    await errors.api_error_for(PoolTimeout(), other)
    assert logins == [1, 1]
