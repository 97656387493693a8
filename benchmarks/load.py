"""Load on the whole server: concurrent streaming clients against `start-app`, one process and
several, and the thread fence across processes.

`--clients` clients (default 50), each on a thread of its own, send streamed turns
(`POST /responses`, `stream: true`) back to back for `--seconds` (default 60) to a real
`start-app` on a scratch database, once for each process count in `--workers` (default 1,2:
this machine's cores). The model is the echo back-end, which answers at once: what is measured
is the server and its memory, not a model. The clients run in this process, on the same cores
as the server (one machine); each keeps one connection, as a browser does.

Then the fence: two `start-app` processes on one database, the same thread's turn sent to both
at the same moment, `--races` times (the echo back-end paced so a turn lasts a moment). Each
race must end with one answer and one 409 `thread_busy`, and the thread must hold that one
answer.

Printed per process count: turns/s, the p50 and p99 of a whole streamed turn (request to
`response.completed`), errors by kind, and the most connections the app held on the database
(sampled from `pg_stat_activity`). Targets: no errors; turns/s with the most processes at
least that of one process (throughput grows with processes, up to the cores); no race answered
twice.

    uv run python benchmarks/load.py [--clients 50] [--seconds 60] [--workers 1,2] [--json]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from common import check, new_id, parser, print_table, run_cli, scratch_database

START_APP = Path(sys.executable).parent / "start-app"
READY_SECONDS = 120.0
RACE_ECHO_DELAY = "0.05"  # seconds per streamed word: a raced turn lasts about half a second
ERROR_SAMPLES = 5
FENCED = "one answer, one thread_busy"
FENCED = "one answer, one thread_busy"


# --- the app, as a process ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def running_app(conninfo: str, workers: int, **env: str) -> AsyncIterator[str]:
    """`start-app --workers N` on `conninfo` with the echo model, until the block ends; its URL."""
    port = _free_port()
    foreign = ("DATABASE_", "PG", "DATABRICKS_", "LAKEBASE_", "APP_WORKERS", "MODEL_")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(foreign)}
    environment.update({"MODEL_BACKEND": "echo", "DATABASE_URL": conninfo, **env})
    command = [str(START_APP), "--port", str(port), "--log-level", "warning"]
    if workers > 1:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        await asyncio.to_thread(_wait_ready, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    output: list[str] = []
    timer = threading.Timer(READY_SECONDS, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            output.append(line)
            if "is ready at" in line:
                # Keep reading (and dropping) its output, or a full pipe would stall it.
                threading.Thread(target=process.stdout.read, daemon=True).start()
                return
    finally:
        timer.cancel()
    raise RuntimeError("start-app did not become ready:\n" + "".join(output))


# --- the clients -------------------------------------------------------------------------------


class Tally:
    """What the clients saw: each completed turn's seconds, each failure by kind."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []

    def fail(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < ERROR_SAMPLES:
            self.samples.append(f"{kind}: {detail[:300]}")


async def streamed_turn(http: httpx.AsyncClient, thread_id: str, text: str, tally: Tally) -> None:
    body = {"input": text, "stream": True, "custom_inputs": {"thread_id": thread_id}}
    start = time.perf_counter()
    try:
        async with http.stream("POST", "/responses", json=body) as response:
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")
                tally.fail(f"HTTP {response.status_code}", detail)
                return
            completed = False
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[len("data: ") :])
                if event.get("type") == "error":
                    tally.fail(f"stream error {event.get('code')}", str(event.get("error")))
                    return
                completed = completed or event.get("type") == "response.completed"
    except httpx.HTTPError as error:
        tally.fail(type(error).__name__, str(error))
        return
    if completed:
        tally.latencies.append(time.perf_counter() - start)
    else:
        tally.fail("no response.completed", "the stream ended early")


async def drive(
    url: str, clients: int, seconds: float, turns_per_thread: int = 10
) -> dict[str, Any]:
    """`clients` clients on threads of their own, turn after turn for `seconds`; each client
    starts a new thread every `turns_per_thread` turns, as a user starts a new chat."""
    tally = Tally()
    deadline = time.monotonic() + seconds

    async def client(number: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            turn = 0
            while time.monotonic() < deadline:
                if turn % turns_per_thread == 0:
                    thread_id = new_id(f"load-{number}")  # the next conversation
                turn += 1
                await streamed_turn(http, thread_id, f"turn {turn} of client {number}", tally)

    start = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - start
    ordered = sorted(tally.latencies)
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "turns": len(ordered),
        "turns_per_s": round(len(ordered) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "p99_ms": round(_percentile(ordered, 0.99) * 1000, 1) if ordered else None,
        "errors": dict(tally.errors),
        "error_samples": tally.samples,
    }


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextlib.asynccontextmanager
async def connection_peak(admin: str, dbname: str) -> AsyncIterator[dict[str, Any]]:
    """The most client connections to `dbname` seen while the block runs (sampled every
    0.2 s), and which they were at that moment."""
    seen: dict[str, Any] = {"peak": 0, "at_peak": []}
    stop = asyncio.Event()

    async def sample() -> None:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            query = (
                "SELECT pid, application_name, state, backend_start::text, left(query, 80) "
                # Client backends only: autovacuum's workers show under the database too.
                "FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
            )
            while not stop.is_set():
                rows = await (await conn.execute(query, (dbname,))).fetchall()
                if len(rows) > seen["peak"]:
                    seen["peak"] = len(rows)
                    seen["at_peak"] = [list(row) for row in rows]  # who, for a surprise
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)

    sampler = asyncio.create_task(sample())
    try:
        yield seen
    finally:
        stop.set()
        await sampler


# --- the fence across processes ---------------------------------------------------------------


async def race(urls: list[str], races: int) -> dict[str, Any]:
    """The same new thread's turn sent to every app at once, `races` times."""
    outcomes: Counter[str] = Counter()
    stored_wrong: list[str] = []
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(races):
            thread_id = new_id("race")
            body = {"input": "who answers?", "custom_inputs": {"thread_id": thread_id}}
            replies = await asyncio.gather(
                *(http.post(f"{u}/invocations", json=body) for u in urls)
            )
            codes = sorted(r.status_code for r in replies)
            busy = [r.json()["error"]["code"] for r in replies if r.status_code == 409]
            fenced = codes == [200, 409] and busy == ["thread_busy"]
            outcomes[FENCED if fenced else f"codes {codes} {busy}"] += 1
            thread = (await http.get(f"{urls[0]}/api/threads/{thread_id}")).json()
            answers = [m for m in thread.get("messages", []) if m["role"] == "assistant"]
            if len(answers) != codes.count(200):
                stored_wrong.append(thread_id)
    return {
        "races": races,
        "outcomes": dict(outcomes),
        "double_answers": sum(n for k, n in outcomes.items() if "[200, 200]" in k),
        "stored_wrong": stored_wrong,
    }


# --- the run ------------------------------------------------------------------------------------


async def measure(
    admin: str, clients: int = 50, seconds: float = 60.0, workers: tuple[int, ...] = (1, 2),
    races: int = 20,
) -> dict[str, Any]:  # fmt: skip
    runs: list[dict[str, Any]] = []
    for count in workers:
        async with scratch_database(admin, None) as conninfo:
            async with running_app(conninfo, count) as url:
                async with connection_peak(admin, conninfo_to_dict(conninfo)["dbname"]) as seen:
                    figures = await drive(url, clients, seconds)
                pool = httpx.get(f"{url}/agent/info", timeout=10).json()["process"]
            runs.append({"workers": count, **figures, "pool_max_size": pool["pool_max_size"],
                         "peak_connections": seen["peak"],
                         "connections_at_peak": seen["at_peak"]})  # fmt: skip
    async with (
        scratch_database(admin, None) as conninfo,
        running_app(conninfo, 1, ECHO_DELAY_SECONDS=RACE_ECHO_DELAY) as first,
        running_app(conninfo, 1, ECHO_DELAY_SECONDS=RACE_ECHO_DELAY) as second,
    ):
        fencing = await race([first, second], races)
    return {
        "cpus": os.cpu_count(),
        "runs": runs,
        "fencing": fencing,
        "checks": checks(runs, fencing),
    }


def checks(runs: list[dict[str, Any]], fencing: dict[str, Any]) -> list[dict[str, Any]]:
    errors = sum(sum(run["errors"].values()) for run in runs)
    result = [check("errors under load (all runs)", mode="exit", value=errors, target=0,
                    op="<=", unit=" errors")]  # fmt: skip
    if len(runs) > 1:
        one, most = runs[0], runs[-1]
        growth = most["turns_per_s"] / one["turns_per_s"] if one["turns_per_s"] else 0.0
        result.append(check(
            f"turns/s, {most['workers']} processes / {one['workers']}", mode="exit",
            value=growth, target=1.0, op=">=", unit="x",
            note=f"{one['turns_per_s']} -> {most['turns_per_s']} turns/s on {os.cpu_count()} "
            "cores shared with the clients",
        ))  # fmt: skip
    result.append(check("races answered twice (two processes)", mode="exit",
                        value=fencing["double_answers"] + len(fencing["stored_wrong"]),
                        target=0, op="<=", unit=" races"))  # fmt: skip
    return result


def report(result: dict[str, Any]) -> None:
    runs = result["runs"]
    clients, seconds = runs[0]["clients"], runs[0]["seconds"]
    print(f"\n{clients} streaming clients on distinct threads, ~{seconds:.0f} s per run, "
          f"{result['cpus']} cores (clients and server share them)")  # fmt: skip
    print_table(
        ("processes", "turns", "turns/s", "p50 ms", "p99 ms", "errors", "pool each", "peak conns"),
        ((r["workers"], r["turns"], r["turns_per_s"], r["p50_ms"], r["p99_ms"],
          sum(r["errors"].values()), r["pool_max_size"], r["peak_connections"])
         for r in runs),
    )  # fmt: skip
    for run in runs:
        for sample in run["error_samples"]:
            print(f"  error ({run['workers']} processes): {sample}")
    fencing = result["fencing"]
    print(f"\nfence across two processes, {fencing['races']} races: {fencing['outcomes']}")
    print("\ntargets")
    print_table(
        ("target", "value", "target", "result"),
        ((c["name"], c["value"], c["target"], c["passed"]) for c in result["checks"]),
    )
    for c in result["checks"]:
        if c["note"]:
            print(f"  note, {c['name']}: {c['note']}")


def workers_argument(value: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in value.split(",") if part.strip())
    if not counts or min(counts) < 1:
        raise ValueError(value)
    return counts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__)
    cli.add_argument("--clients", type=int, default=50)
    cli.add_argument("--seconds", type=float, default=60.0)
    cli.add_argument("--workers", type=workers_argument, default=(1, 2),
                     help="process counts to run, comma-separated (default 1,2)")  # fmt: skip
    cli.add_argument("--races", type=int, default=20)
    args = cli.parse_args(argv)
    return run_cli(args, measure, report, clients=args.clients, seconds=args.seconds,
                   workers=args.workers, races=args.races)  # fmt: skip


if __name__ == "__main__":
    main()
