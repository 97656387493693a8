"""GET /metrics against a running app: what was done moves each metric by exactly that much.

The metrics belong to the process (Prometheus' way), and the tests' servers share this one:
each test compares a scrape after with a scrape before.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app_process import App
from conftest import LiveServer, make_settings, say, sse_events
from test_models import FailingModel

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
P = "lakebase_memory_"


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def requests_of(samples: Samples, route: str, method: str, status_class: str) -> float:
    return value(samples, f"{P}http_request_duration_seconds_count",
                 route=route, method=method, status_class=status_class)  # fmt: skip


def requests_moved(
    before: Samples, after: Samples, route: str, method: str, status_class: str
) -> float:
    return requests_of(after, route, method, status_class) - requests_of(
        before, route, method, status_class
    )


def changed_errors(before: Samples, after: Samples) -> dict[tuple[str, str], float]:
    changes = {}
    for (name, labels), count in after.items():
        if name == f"{P}errors_total" and count != value(before, name, **dict(labels)):
            label = dict(labels)
            changes[(label["code"], label["channel"])] = count - value(before, name, **label)
    return changes


def test_turns_errors_and_requests_are_counted_exactly(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(make_settings(database, echo_delay_seconds=0.05))
    with server.client() as client, server.client() as other:
        before = scrape(client)
        say(client, "one", "counted")
        say(client, "two", "counted")
        assert client.post("/invocations", json={"input": 5}).status_code == 422
        assert client.get("/api/threads/no-such-thread").status_code == 404
        assert client.get("/no/such/path").status_code == 404
        with client.stream("POST", "/responses", json={
            "input": "a slow answer", "stream": True, "custom_inputs": {"thread_id": "busy"},
        }) as stream:  # fmt: skip
            lines = stream.iter_lines()
            next(lines)  # the turn runs: it holds the thread's lease
            during = scrape(other)
            busy = other.post(
                "/invocations", json={"input": "me too", "custom_inputs": {"thread_id": "busy"}}
            )
            assert busy.status_code == 409, busy.text
            assert "response.completed" in "".join(lines)
        after = scrape(client)

    assert value(during, f"{P}turn_leases_held") == value(before, f"{P}turn_leases_held") + 1
    assert value(after, f"{P}turn_leases_held") == value(before, f"{P}turn_leases_held")
    assert moved(before, after, f"{P}turns_total", outcome="completed") == 3
    assert moved(before, after, f"{P}turns_total", outcome="failed") == 0
    assert moved(before, after, f"{P}turns_total", outcome="cancelled") == 0
    assert moved(before, after, f"{P}turn_duration_seconds_count") == 3
    assert moved(before, after, f"{P}turn_first_output_seconds_count") == 3
    # The echo model pauses 0.05 s before each word: a turn takes longer than that.
    assert moved(before, after, f"{P}turn_duration_seconds_sum") > 3 * 0.05
    assert changed_errors(before, after) == {
        ("invalid_request", "response"): 1,
        ("thread_not_found", "response"): 1,
        ("not_found", "response"): 1,
        ("thread_busy", "response"): 1,
    }
    # By route template, never the raw path; a scrape counts once it has answered.
    assert requests_moved(before, after, "/invocations", "POST", "2xx") == 2
    assert requests_moved(before, after, "/invocations", "POST", "4xx") == 2  # the 422 and the 409
    assert requests_moved(before, after, "/responses", "POST", "2xx") == 1
    assert requests_moved(before, after, "/api/threads/{thread_id}", "GET", "4xx") == 1
    assert requests_moved(before, after, "unrouted", "GET", "4xx") == 1
    assert (
        requests_moved(before, after, "/metrics", "GET", "2xx") == 2
    )  # the first and the middle scrape
    assert not any("no-such-thread" in str(labels) or "/no/such" in str(labels)
                   for _, labels in after)  # fmt: skip


def test_an_oversized_body_and_an_unknown_method_are_counted(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(make_settings(database, max_request_bytes=4096))
    with server.client() as client:
        before = scrape(client)
        assert client.post("/invocations", content=b"x" * 5000).status_code == 413
        assert client.request("PROPFIND", "/health").status_code == 405
        after = scrape(client)
    assert changed_errors(before, after) == {
        ("request_too_large", "response"): 1,
        ("method_not_allowed", "response"): 1,
    }
    assert requests_moved(before, after, "unrouted", "POST", "4xx") == 1  # refused before routing
    assert (
        requests_moved(before, after, "/health", "other", "4xx") == 1
    )  # a method label stays bounded


def test_failed_turns_and_the_stream_error_frame_are_counted(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(make_settings(database), model=FailingModel())
    with server.client() as client:
        before = scrape(client)
        plain = client.post(
            "/invocations", json={"input": "fail", "custom_inputs": {"thread_id": "fails"}}
        )
        assert plain.status_code == 502, plain.text
        streamed = client.post(
            "/invocations",
            json={"input": "fail", "stream": True, "custom_inputs": {"thread_id": "fails-2"}},
        )
        assert sse_events(streamed)[-2]["code"] == "model_error"  # type: ignore[index]
        after = scrape(client)
    assert moved(before, after, f"{P}turns_total", outcome="failed") == 2
    assert moved(before, after, f"{P}turns_total", outcome="completed") == 0
    assert moved(before, after, f"{P}turn_first_output_seconds_count") == 0  # no output
    assert changed_errors(before, after) == {
        ("model_error", "response"): 1,
        ("model_error", "stream"): 1,
    }
    assert value(after, f"{P}turn_leases_held") == value(before, f"{P}turn_leases_held")


def test_a_failed_background_turn_is_counted_as_its_error(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(make_settings(database), model=FailingModel())
    with server.client() as client:
        before = scrape(client)
        started = client.post(
            "/responses",
            json={"input": "fail", "background": True, "custom_inputs": {"thread_id": "bg-fail"}},
        )
        assert started.status_code == 200, started.text
        for _ in range(100):
            response = client.get(f"/responses/{started.json()['id']}").json()
            if response["status"] != "queued" and response["status"] != "in_progress":
                break
            time.sleep(0.05)
        assert response["status"] == "failed" and response["error"]["code"] == "model_error"
        after = scrape(client)
    assert moved(before, after, f"{P}turns_total", outcome="failed") == 1
    assert changed_errors(before, after) == {("model_error", "stream"): 1}


def test_pool_gauges_are_the_pool_now(database: str, serve: Callable[..., LiveServer]) -> None:
    server = serve(make_settings(database, db_pool_max_size=4))
    with server.client() as client:
        say(client, "hello", "pool")
        samples = scrape(client)
        pool = server.app.state.runtime.pool
        assert value(samples, f"{P}db_pool_max_connections") == pool.max_size == 4
        size = value(samples, f"{P}db_pool_connections")
        available = value(samples, f"{P}db_pool_available_connections")
        # The scrape borrows no connection: every open one is idle.
        assert 1 <= size <= 4 and available == size, (size, available)
        assert value(samples, f"{P}db_pool_waiting_requests") == 0
        assert value(samples, f"{P}server_processes") == 1

        async def hold_all() -> None:  # on the server's loop: every connection lent
            connections = [await pool.getconn() for _ in range(4)]
            held.set()
            await release.wait()
            for connection in connections:
                await pool.putconn(connection)

        held, release = threading.Event(), asyncio.Event()
        loop = server.app.state.runtime.checkpointer.loop
        asyncio.run_coroutine_threadsafe(hold_all(), loop)
        assert held.wait(10)
        try:
            lent = scrape(client)
        finally:
            loop.call_soon_threadsafe(release.set)
    assert value(lent, f"{P}db_pool_connections") == 4
    assert value(lent, f"{P}db_pool_available_connections") == 0


def test_metrics_can_be_turned_off(database: str, serve: Callable[..., LiveServer]) -> None:
    server = serve(make_settings(database, metrics_enabled=False))
    with server.client() as client:
        assert client.get("/metrics").status_code == 404


def pinned_clients(url: str) -> dict[int, httpx.Client]:
    """One kept-alive client per worker process, keyed by its pid (a connection stays with the
    process the kernel handed it to)."""
    clients: dict[int, httpx.Client] = {}
    for _ in range(200):
        client = httpx.Client(base_url=url, timeout=30)
        pid = client.get("/agent/info").json()["process"]["pid"]
        if pid in clients:
            client.close()
        else:
            clients[pid] = client
        if len(clients) == 2:
            return clients
    raise AssertionError(f"only {list(clients)} answered")


def answering_pids(url: str) -> set[int]:
    return {httpx.get(f"{url}/agent/info", timeout=10).json()["process"]["pid"]
            for _ in range(40)}  # fmt: skip


def worker_folder(pid: int) -> Path:
    return Path(psutil.Process(pid).environ()["PROMETHEUS_MULTIPROC_DIR"])


@pytest.mark.slow
def test_one_scrape_reports_every_worker(scratch_dir: Path) -> None:
    app = App(scratch_dir, scratch_dir / "data", "--workers", "2").wait_ready()
    clients: dict[int, httpx.Client] = {}
    try:
        clients = pinned_clients(app.url)
        (first, one), (second, two) = clients.items()
        folder = worker_folder(first)
        assert folder == worker_folder(second) and folder.is_dir()
        for number in range(3):
            say(one, f"first {number}", f"first-{number}")
        for number in range(5):
            say(two, f"second {number}", f"second-{number}")
        assert one.post("/invocations", json={"input": 5}).status_code == 422
        for client, pid in ((one, first), (two, second)):
            assert client.get("/agent/info").json()["process"]["pid"] == pid  # still pinned
            samples = scrape(client)  # either worker reports both
            assert value(samples, f"{P}turns_total", outcome="completed") == 8
            assert requests_of(samples, "/invocations", "POST", "2xx") == 8
            assert value(samples, f"{P}errors_total", code="invalid_request",
                         channel="response") == 1  # fmt: skip
            assert value(samples, f"{P}server_processes") == 2
            pool_max = client.get("/agent/info").json()["process"]["pool_max_size"]
            assert value(samples, f"{P}db_pool_max_connections") == 2 * pool_max
            assert value(samples, f"{P}turn_leases_held") == 0

        psutil.Process(first).kill()  # its counts stay; its gauges go
        deadline = time.monotonic() + 60
        while (pids := answering_pids(app.url)) != {second} | (pids - {first}) or len(pids) < 2:
            assert time.monotonic() < deadline, app.logs()  # until the replacement serves
            time.sleep(0.2)
        samples = scrape(two)
        assert value(samples, f"{P}server_processes") == 2  # not 3: the dead one was dropped
        assert value(samples, f"{P}turns_total", outcome="completed") == 8
        assert value(samples, f"{P}db_pool_max_connections") == 2 * pool_max
    finally:
        for client in clients.values():
            client.close()
        code = app.interrupt()
    assert code == 0, app.logs()
    assert not folder.exists()  # the parent removed the workers' files


def test_a_cancelled_turn_is_counted_as_cancelled() -> None:
    """What shutdown (after its grace period) or a cancel does to a turn's task."""
    from lakebase_memory.observability.metrics import REGISTRY, observed_turn

    @observed_turn
    async def endless_turn() -> AsyncIterator[dict[str, str]]:
        yield {"type": "response.created"}
        await asyncio.sleep(3600)
        yield {"type": "response.completed"}

    def cancelled() -> float:
        return REGISTRY.get_sample_value(f"{P}turns_total", {"outcome": "cancelled"}) or 0.0

    async def run_and_cancel() -> None:
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in endless_turn():
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = cancelled()
    asyncio.run(run_and_cancel())
    assert cancelled() == before + 1
