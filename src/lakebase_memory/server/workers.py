"""`start-app --workers N`: N server processes on one port and one database.

The parent opens the database target once (it starts the embedded PostgreSQL, and keeps it
running as one process does, `database/watch.py`), applies pending migrations, checks that N
pools fit the server's connection limit (`database/sizing.py`), binds the port and starts N
worker processes. Each worker is a fresh interpreter (spawned, not forked: no pool, socket
or thread of the parent's is shared by accident) with its own runtime: its own pool of its
share of connections, its own model client. The kernel hands each new connection to one of
them. What one thread's turns need to agree on is in the database, not in a process: a turn
holds its thread's lease row, so two processes never both answer one thread (the second gets
409 `thread_busy`), and any process reads what another wrote.

A worker that dies is replaced. Ctrl-C or SIGTERM stops the workers (each finishes its running
turns, as a single process does) and then the database. Workers stop on their own if the
parent is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import typer
import uvicorn

from lakebase_memory.config import ModelBackend, Settings
from lakebase_memory.database import DatabaseTarget, TargetKind, open_target
from lakebase_memory.database.pool import probe_server
from lakebase_memory.database.watch import EmbeddedWatch
from lakebase_memory.errors import ConfigurationError
from lakebase_memory.observability import metrics
from lakebase_memory.schema import ensure_schema
from lakebase_memory.server.app import create_app
from lakebase_memory.server.process import AppServer, app_url
from lakebase_memory.server.runtime import SHUTDOWN_GRACE_SECONDS

logger = logging.getLogger("lakebase_memory.workers")
SPAWN = multiprocessing.get_context("spawn")
READY_TIMEOUT_SECONDS = 120.0  # a worker opens a pool and a model client: seconds, not minutes
STOP_TIMEOUT_SECONDS = SHUTDOWN_GRACE_SECONDS + 10.0
LOCAL_MODEL_REFUSAL = (
    "--workers is for the echo, openai and databricks back-ends: the local model already "
    "uses every core in a process of its own, and each worker would load another copy onto "
    "the same cores. Start one process (no --workers), or set MODEL_BACKEND to a served model."
)


@dataclass(frozen=True)
class WorkerPlan:
    """What a worker process is given (pickled to it)."""

    settings: Settings
    log_level: str
    # The embedded database the parent runs (conninfo, data folder); None: the worker opens
    # the configured target itself (its own Lakebase credentials, for one).
    embedded: tuple[str, str] | None


def serve_workers(settings: Settings, host: str, port: int, log_level: str) -> bool:
    """Run `settings.app_workers` server processes until stopped; False if they never served.

    Raises:
        ConfigurationError, DatabaseUnavailableError: before any worker starts.
    """
    if settings.model_backend is ModelBackend.LOCAL:
        raise ConfigurationError(LOCAL_MODEL_REFUSAL)
    target = open_target(settings)
    try:
        pool_size = asyncio.run(_prepare_database(target, settings))
        try:
            listener = socket.create_server(
                (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET
            )
        except OSError as error:
            raise ConfigurationError(f"cannot listen on {host}:{port}: {error.strerror}") from None
        embedded = (target.conninfo, target.location) if target.embedded is not None else None
        plan = WorkerPlan(settings, log_level, embedded)
        ready_line = (
            f"lakebase-memory is ready at {app_url(host, port)}  ({settings.app_workers} "
            f"worker processes, up to {pool_size} database connections each; Ctrl-C stops it)"
        )
        # Every worker writes its metrics to one fresh folder; a scrape of any one sums them.
        with listener, metrics.shared_across_workers(settings.metrics_enabled):
            return asyncio.run(_supervise(plan, listener, target, ready_line))
    finally:
        target.close()


async def _prepare_database(target: DatabaseTarget, settings: Settings) -> int:
    """Once for all workers: the login check, the pool size, the migrations."""
    facts = await probe_server(target)
    pool_size = facts.pool_size(settings)  # raises if N pools cannot fit
    for line in await ensure_schema(await target.login_conninfo(), settings.checkpoint_schema):
        logger.info("created %s", line)
    return pool_size


@dataclass
class _Worker:
    process: BaseProcess
    ready_pipe: Connection  # the worker sends its pid once it serves
    ready: bool = False

    @classmethod
    def start(cls, plan: WorkerPlan, listener: socket.socket) -> _Worker:
        receive, send = SPAWN.Pipe(duplex=False)
        process = SPAWN.Process(
            target=run_worker, args=(plan, listener, send, os.getpid()),
            name="lakebase-memory worker",
        )  # fmt: skip
        process.start()
        send.close()  # the child has its own copy
        return cls(process, receive)

    def check_ready(self) -> bool:
        if not self.ready and self.ready_pipe.poll():
            with contextlib.suppress(EOFError):
                self.ready_pipe.recv()
                self.ready = True
        return self.ready


async def _supervise(
    plan: WorkerPlan, listener: socket.socket, target: DatabaseTarget, ready_line: str
) -> bool:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watch = EmbeddedWatch.of(target)
    workers = [_Worker.start(plan, listener) for _ in range(plan.settings.app_workers)]
    served = False
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not stop.is_set():
            if not served and all(worker.check_ready() for worker in workers):
                served = True
                typer.echo(ready_line)
            for index, worker in enumerate(workers):
                if worker.process.is_alive():
                    continue
                if not worker.check_ready():
                    # It failed before serving (its error is printed above): the next one
                    # would fail the same way.
                    typer.echo("error: a worker process could not start; stopping", err=True)
                    return False
                logger.warning(
                    "worker process %s ended (exit code %s); starting another",
                    worker.process.pid, worker.process.exitcode,
                )  # fmt: skip
                metrics.worker_ended(worker.process.pid)
                workers[index] = _Worker.start(plan, listener)
            if not served and time.monotonic() > deadline:
                typer.echo("error: the worker processes did not start in time", err=True)
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        return served
    finally:
        await asyncio.to_thread(_stop_all, workers)
        if watch is not None:
            await watch.stop()
        if served:
            typer.echo("lakebase-memory stopped")


def _stop_all(workers: list[_Worker]) -> None:
    """SIGTERM each (uvicorn's graceful stop: running turns finish), then kill stragglers."""
    for worker in workers:
        if worker.process.is_alive() and worker.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()


def run_worker(plan: WorkerPlan, listener: socket.socket, ready: Connection, parent: int) -> None:
    """A worker process's main: one `AppServer` on the parent's socket."""
    os.setpgid(0, 0)  # Ctrl-C reaches the parent only, which stops each worker once
    logging.basicConfig(level=plan.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    target = None
    if plan.embedded is not None:
        conninfo, location = plan.embedded
        target = DatabaseTarget(TargetKind.EMBEDDED, conninfo, location)  # the parent's to stop
    app = create_app(plan.settings)
    config = uvicorn.Config(app, log_level=plan.log_level.lower())
    server = AppServer(
        config, app, plan.settings, on_ready=lambda: ready.send(os.getpid()), target=target
    )
    threading.Thread(target=_stop_with_parent, args=(server, parent), daemon=True).start()
    server.run(sockets=[listener])
    if not server.started:
        sys.exit(1)


def _stop_with_parent(server: uvicorn.Server, parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    server.should_exit = True  # orphaned: the parent was killed
