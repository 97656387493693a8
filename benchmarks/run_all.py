"""Every benchmark with a performance target (issues 6, 12 and 14), in one run on one PostgreSQL
server.

Runs, in order (each also runs alone, see its docstring and `--help`):

- `memory_growth.py`: storage and turn latency as one thread grows to 300 turns;
- `short_threads.py`: a turn on 10-turn threads against LangGraph's in-memory saver;
- `throughput.py`: turns/s of 8 concurrent clients on independent threads, and pgbench;
- `read_latest.py`: reading a thread's latest state at 10, 300 and 1,000 turns;
- `server_turns.py`: the server's whole turn as its thread grows to 300 turns;
- `load.py`: 50 streaming clients against `start-app`, one process and two, and the fence;
- `store_search.py`: the long-term memory store's searches at a million items (against
  LangGraph's own store query), and the checkpoint writes a tool call adds to a turn.

Each compares the server's `AsyncLinearPostgresSaver` with LangGraph's stock
`AsyncPostgresSaver` measured in the same run, and ends with the targets, PASS or FAIL; a
summary of all targets comes last. Without `--database-url` (or `$DATABASE_URL`) an embedded
PostgreSQL is started for the run and removed afterwards. The full run takes a few minutes;
`--quick` runs tiny sizes (a smoke test: its numbers mean nothing).

    uv run python benchmarks/run_all.py [--quick] [--only memory_growth,throughput] [--json]
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import load
import memory_growth
import read_latest
import server_turns
import short_threads
import store_search
import throughput
from common import SERVER_MODE, parser, print_table, run_cli

Measure = Callable[..., Awaitable[dict[str, Any]]]
BENCHMARKS: dict[str, tuple[Measure, Callable[[dict[str, Any]], None]]] = {
    "memory_growth": (memory_growth.measure, memory_growth.report),
    "short_threads": (short_threads.measure, short_threads.report),
    "throughput": (throughput.measure, throughput.report),
    "read_latest": (read_latest.measure, read_latest.report),
    "server_turns": (server_turns.measure, server_turns.report),
    "load": (load.measure, load.report),
    "store_search": (store_search.measure, store_search.report),
}
QUICK: dict[str, dict[str, Any]] = {
    "memory_growth": {"turns": 12},
    "short_threads": {"threads": 2, "turns": 3, "first": 2},
    "throughput": {"clients": 2, "turns": 3, "per_thread": 3, "rounds": 1, "pgbench_seconds": 1},
    "read_latest": {"turns": 12, "stock_turns": 10, "reads": 3},
    "server_turns": {"turns": 12, "threads": 1, "window": 2},
    "load": {"clients": 4, "seconds": 2, "races": 2},
    "store_search": store_search.QUICK,
}


def summary(results: dict[str, dict[str, Any]]) -> None:
    print("\n== summary: every target (linear = the server's saver, stock = LangGraph's) ==")
    rows = []
    for name, result in results.items():
        for c in result["checks"]:
            mode = c["mode"] + (" (server)" if c["mode"] == SERVER_MODE else "")
            rows.append((f"{name}: {c['name']}", mode, c["value"], c["stock"], c["target"],
                         c["passed"], c["vs_stock"]))  # fmt: skip
    head = ("target", "durability", "linear", "stock", "target", "result", "linear/stock")
    print_table(head, rows)
    # "-": a target with no durability mode (the store's searches), as the server runs it.
    server = [c for r in results.values() for c in r["checks"] if c["mode"] in (SERVER_MODE, "-")]
    passed = sum(c["passed"] for c in server)
    print(f"\nin the server's mode (durability={SERVER_MODE}): {passed}/{len(server)} targets pass")


async def run(
    admin: str, names: list[str], quick: bool, pgbench: bool, verbose: bool
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        measure, report = BENCHMARKS[name]
        params = dict(QUICK[name]) if quick else {}
        if name == "throughput":
            params["pgbench"] = pgbench
        start = time.perf_counter()
        results[name] = await measure(admin, **params)
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        if verbose:
            report(results[name])
            print(f"({name}: {results[name]['seconds']:.0f} s)\n", flush=True)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__)
    cli.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    cli.add_argument("--no-pgbench", action="store_true", help="skip the pgbench comparison")
    cli.add_argument(
        "--only", default=",".join(BENCHMARKS), help="benchmarks to run, comma-separated"
    )
    args = cli.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if unknown := [n for n in names if n not in BENCHMARKS]:
        cli.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")

    return run_cli(
        args,
        run,
        summary,
        names=names,
        quick=args.quick,
        pgbench=not args.no_pgbench,
        verbose=not args.json,
    )


if __name__ == "__main__":
    main()
