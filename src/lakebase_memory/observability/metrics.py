"""Prometheus metrics at `GET /metrics`: turns, errors by code, latencies, the pool, leases.

The server's code calls this module through one-line hooks: `observed_turn` (a decorator on
`turns.run_turn`), `lease_held` (next to the turn's lease), `count_error` (where an error is
answered or streamed) and `install` (the middleware, the endpoint). Each hook costs a few
microseconds per request or turn, nothing per token.

One process (`start-app`): the metrics live in this process's memory, in `REGISTRY`; the pool
gauges are read from the pool when scraped (`PoolCollector`), so they are current.

`start-app --workers N`: a scrape reaches whichever worker the kernel hands the connection
to, so every worker writes its values to files in one folder the parent made
(`shared_across_workers`, prometheus_client's multiprocess mode) and the scraped one sums
them. Counters and histograms add up over every worker that ever ran (a dead worker's
counts stay: a total never goes back). The gauges are `livesum`: the sum over the live
workers, which is what the database sees (connections of all pools together; leases the app
holds); a worker the parent finds dead is dropped (`worker_ended`). Per-pid gauges
(`liveall`) were not chosen: a replaced worker is a new pid, and series keyed by pids that
come and go are useless on a dashboard. A worker cannot read another's pool, so each
writes its pool's gauges every `POOL_SAMPLE_SECONDS`, and the scraped one right before it
answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Any, ParamSpec, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakebase_memory.database.pool import Pool

PREFIX = "lakebase_memory_"
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client picks in-memory or file-backed values once, when it is imported (before
# any metric exists); this says which it picked. Workers are fresh interpreters started with
# the variable already set, so theirs is the file-backed kind.
MULTIPROCESS = MULTIPROCESS_DIR_VARIABLE in os.environ
POOL_SAMPLE_SECONDS = 1.0  # how stale another worker's pool gauges may be (multiprocess)

# The event that starts a turn's first output item (the answer's message, or a tool call).
FIRST_OUTPUT_EVENT = "response.output_item.added"
TURN_OUTCOMES = ("completed", "failed", "cancelled")
# A method is any token a client sends; anything else is "other", so a label stays bounded.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Answered before routing (no route matched: 404; a body refused as too large: 413), as one
# series, not one per path.
UNMATCHED_ROUTE = "unrouted"

REGISTRY = CollectorRegistry()  # this process's metrics; the pool's are added per scrape

HTTP_REQUEST_DURATION = Histogram(
    f"{PREFIX}http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer (a stream's last event), "
    "by route template, method and status class.",
    ["route", "method", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
TURNS = Counter(
    f"{PREFIX}turns",
    "Agent turns ended, by outcome: completed, failed (an error), cancelled (stopped).",
    ["outcome"],
    registry=REGISTRY,
)
TURN_DURATION = Histogram(
    f"{PREFIX}turn_duration_seconds",
    "Time an agent turn ran, from its first event to its last, whatever its outcome.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
    registry=REGISTRY,
)
TIME_TO_FIRST_OUTPUT = Histogram(
    f"{PREFIX}turn_first_output_seconds",
    "Time from a turn's start to its first output item (the answer or a tool call).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
ERRORS = Counter(
    f"{PREFIX}errors",
    "Errors answered, by their API code; channel is 'response' (an error answer) or "
    "'stream' (an error event ending a stream that had started).",
    ["code", "channel"],
    registry=REGISTRY,
)
LEASES_HELD = Gauge(
    f"{PREFIX}turn_leases_held",
    "Thread leases held right now by running turns.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
for _outcome in TURN_OUTCOMES:  # 0 from the start, so a rate never misses its first turn
    TURNS.labels(_outcome)

# name: (help, how to read it from the pool)
POOL_GAUGES: dict[str, tuple[str, Callable[[Pool, dict[str, int]], int]]] = {
    f"{PREFIX}db_pool_connections": (
        "Connections the database pool holds open (in use or idle).",
        lambda _, stats: stats["pool_size"],
    ),
    f"{PREFIX}db_pool_available_connections": (
        "Idle connections in the pool, ready to be lent.",
        lambda _, stats: stats["pool_available"],
    ),
    f"{PREFIX}db_pool_waiting_requests": (
        "Requests waiting for a connection because every one is lent.",
        lambda _, stats: stats.get("requests_waiting", 0),
    ),
    f"{PREFIX}db_pool_max_connections": (
        "The most connections the pool may open (its share of the database's limit).",
        lambda pool, _: pool.max_size,
    ),
    f"{PREFIX}server_processes": (
        "Server processes reporting (the workers of start-app --workers).",
        lambda _, __: 1,
    ),
}


# --- turns and leases --------------------------------------------------------------------

P = ParamSpec("P")
E = TypeVar("E", bound=Mapping[str, Any])


def observed_turn(run: Callable[P, AsyncIterator[E]]) -> Callable[P, AsyncIterator[E]]:
    """Decorate a turn's event generator: count its outcome, time it and its first output.

    Per event it only compares one string until the first output has been seen.
    """

    @functools.wraps(run)
    async def observed(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[E]:
        started = time.perf_counter()
        outcome = "failed"
        awaiting_output = True
        try:
            async with aclosing(run(*args, **kwargs)) as events:  # type: ignore[type-var]
                async for event in events:
                    if awaiting_output and event.get("type") == FIRST_OUTPUT_EVENT:
                        TIME_TO_FIRST_OUTPUT.observe(time.perf_counter() - started)
                        awaiting_output = False
                    yield event
            outcome = "completed"
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "cancelled"  # the task was cancelled (shutdown, a cancel request)
            raise
        finally:
            TURNS.labels(outcome).inc()
            TURN_DURATION.observe(time.perf_counter() - started)

    return observed


class _LeaseHeld:
    async def __aenter__(self) -> None:
        LEASES_HELD.inc()

    async def __aexit__(self, *exc: object) -> None:
        LEASES_HELD.dec()


_LEASE_HELD = _LeaseHeld()  # holds no state: one serves every turn


def lease_held() -> _LeaseHeld:
    """Counts a turn's lease while the block runs (after the lease is taken, until it ends)."""
    return _LEASE_HELD


def count_error(code: str, *, stream: bool = False) -> None:
    """One error answered with `code`: an error answer, or an error event in a stream."""
    ERRORS.labels(code, "stream" if stream else "response").inc()


# --- HTTP requests -----------------------------------------------------------------------


class RequestMetrics:
    """Pure ASGI middleware timing each request by its route's template (not its path, whose
    ids would make one series per thread), method and status class."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Nothing sent means an exception on its way to the outermost middleware, which
        # answers 500.
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            HTTP_REQUEST_DURATION.labels(
                route_template(scope), method, f"{status // 100}xx"
            ).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/api/threads/{thread_id}`); the router puts the
    route in the scope it was handed, which is this middleware's."""
    return str(getattr(scope.get("route"), "path_format", None) or UNMATCHED_ROUTE)


# --- the pool ----------------------------------------------------------------------------


class PoolCollector:
    """The pool's gauges as they are when scraped (one process). Read when made, on the
    event loop (`get_stats` counts in memory, no query); collected in the encoding thread."""

    def __init__(self, pool: Pool) -> None:
        stats = pool.get_stats()
        self.values = {name: read(pool, stats) for name, (_, read) in POOL_GAUGES.items()}

    def collect(self) -> Iterator[Metric]:
        for name, (documentation, _) in POOL_GAUGES.items():
            yield GaugeMetricFamily(name, documentation, value=self.values[name])


@functools.cache
def _pool_gauges() -> dict[str, Gauge]:
    """The pool's gauges as file-backed values (multiprocess), made on first use."""
    return {
        name: Gauge(name, documentation, registry=None, multiprocess_mode="livesum")
        for name, (documentation, _) in POOL_GAUGES.items()
    }


def write_pool_gauges(pool: Pool) -> None:
    stats = pool.get_stats()
    for name, gauge in _pool_gauges().items():
        gauge.set(POOL_GAUGES[name][1](pool, stats))


async def _write_pool_gauges_forever(pool: Pool) -> None:
    while True:
        write_pool_gauges(pool)
        await asyncio.sleep(POOL_SAMPLE_SECONDS)


@asynccontextmanager
async def _pool_sampling(app: FastAPI) -> AsyncIterator[None]:
    """The router's lifespan, entered after the app's (the runtime is open): in a worker,
    writes the pool's gauges while the app serves."""
    if not MULTIPROCESS:
        yield
        return
    task = asyncio.create_task(_write_pool_gauges_forever(app.state.runtime.pool))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- the endpoint ------------------------------------------------------------------------

router = APIRouter(lifespan=_pool_sampling)


@router.get("/metrics", summary="Prometheus metrics of the server (all workers)")
async def metrics_endpoint(request: Request) -> Response:
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    registry = scrape_registry(request.app.state.runtime.pool)
    # Encoding costs about 8 us per line (prometheus_client's): in a thread, so that a big
    # scrape delays the streams on the event loop by a GIL switch (5 ms), not by all of it.
    return Response(await asyncio.to_thread(encode, registry), media_type=content_type)


def scrape_registry(pool: Pool) -> CollectorRegistry:
    """What one scrape reports: every worker's files (multiprocess), else this process's
    metrics and this app's pool."""
    registry = CollectorRegistry()
    if MULTIPROCESS:
        write_pool_gauges(pool)  # this worker's, current; the others' are at most a second old
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
        registry.register(PoolCollector(pool))
    return registry


def install(app: FastAPI, enabled: bool) -> None:
    """`GET /metrics` and the request middleware; call it after the app's other middleware,
    so that this one is outermost and times their answers (a 413) too."""
    if enabled:
        app.add_middleware(RequestMetrics)
        app.include_router(router)


# --- start-app --workers -----------------------------------------------------------------


@contextlib.contextmanager
def shared_across_workers(enabled: bool) -> Iterator[None]:
    """In start-app's parent, around its workers' lives: a fresh folder for their metric files
    (a stale one would add an earlier run's counts), named in the environment they inherit,
    removed at the end."""
    if not enabled:
        yield
        return
    folder = tempfile.mkdtemp(prefix="lakebase-memory-metrics-")
    previous = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    os.environ[MULTIPROCESS_DIR_VARIABLE] = folder
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESS_DIR_VARIABLE, None)
        else:
            os.environ[MULTIPROCESS_DIR_VARIABLE] = previous
        shutil.rmtree(folder, ignore_errors=True)


def worker_ended(pid: int | None) -> None:
    """In start-app's parent: a worker died; its live gauges (pool, leases) no longer count."""
    if pid is not None and MULTIPROCESS_DIR_VARIABLE in os.environ:
        multiprocess.mark_process_dead(pid)
