"""The cost of reading a thread's latest state at 10 turns and at 1,000 turns.

A thread is grown by real turns of the server's graph with durability="exit" (one checkpoint
per turn, as the server runs it), 1 KB of text per turn: to `--turns` turns (default 1,000)
with the server's `AsyncLinearPostgresSaver`, and to `--stock-turns` (default 300) with
LangGraph's stock `AsyncPostgresSaver`, whose thread takes quadratic time and space to grow
(each turn rewrites the whole history), hence the cap. Both grow together, interleaved, on the
same PostgreSQL server, each in its own scratch database on a pool made as the server makes it.

At turn 10, at `--stock-turns` and at `--turns` (each saver up to its own cap), the latest
state is read `--reads` times (default 50; the median counts) by:

- `graph.aget_state(config)`, what the server's thread API does, and `saver.aget_tuple(config)`,
  on the saver that wrote the thread (its in-process message cache is warm, as in the server);
- `aget_tuple` on a fresh linear saver without cache (`cache_threads=0`): the cost after a
  restart or on another server process, where every message of the state is read and decoded.

LangGraph's `InMemorySaver` grows a third thread to `--turns` alongside; its `aget_tuple` (which
unpickles a fresh copy of the state on each read) is the baseline.

Targets: reading the latest state costs the same at 10 and at 1,000 turns (issue 6: the linear
saver's read at `--turns` within 1.2x of its read at 10); and no more than the in-memory
saver's `aget_tuple` on the same thread at each mark (issue 12: ratio <= 1.0), for the
server's warm read and for a fresh saver's.

    uv run python benchmarks/read_latest.py [--turns 1000] [--stock-turns 300] [--json]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from common import (
    LINEAR,
    MEMORY,
    SERVER_MODE,
    STOCK,
    check,
    config,
    make_graph,
    make_saver,
    new_id,
    parser,
    print_checks,
    print_table,
    rotated,
    run_cli,
    scratch_pool,
    timed_turn,
)

FIRST_MARK = 10
TARGET = 1.2
# What is read, and how: (key, label).
READS = (
    ("state", "graph.aget_state, writer's saver (cache warm)"),
    ("tuple", "saver.aget_tuple, writer's saver (cache warm)"),
    ("tuple_cold", "saver.aget_tuple, fresh saver without cache"),
)


async def median_read_ms(read: Callable[[], Awaitable[Any]], times: int) -> float:
    await read()  # the first read of a mark may warm a cache or prepare a statement
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        await read()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


async def measure(
    admin: str, *, turns: int = 1000, stock_turns: int = 300, reads: int = 50
) -> dict[str, Any]:
    if not FIRST_MARK <= stock_turns <= turns:
        raise ValueError(f"need {FIRST_MARK} <= stock_turns <= turns")
    marks = sorted({FIRST_MARK, stock_turns, turns})
    caps = {MEMORY: turns, LINEAR: turns, STOCK: stock_turns}
    times: dict[str, dict[str, dict[int, float]]] = {
        MEMORY: {key: {} for key, _ in READS if key != "tuple_cold"},
        LINEAR: {key: {} for key, _ in READS},
        STOCK: {key: {} for key, _ in READS if key != "tuple_cold"},
    }
    build_seconds = {MEMORY: 0.0, LINEAR: 0.0, STOCK: 0.0}
    async with AsyncExitStack() as stack:
        savers = {MEMORY: make_saver(MEMORY)}
        graphs, cold = {MEMORY: make_graph(savers[MEMORY])}, None
        for saver in (LINEAR, STOCK):
            _, pool = await stack.enter_async_context(scratch_pool(admin, saver, 2))
            savers[saver] = make_saver(saver, pool)
            graphs[saver] = make_graph(savers[saver])
            if saver == LINEAR:
                cold = make_saver(LINEAR, pool, cache_threads=0)
        threads = {saver: new_id(f"read-{saver}") for saver in savers}
        done = 0
        for mark in marks:
            for turn in range(done + 1, mark + 1):
                for saver in rotated(list(caps), turn):
                    if turn <= caps[saver]:
                        seconds = await timed_turn(graphs[saver], threads[saver], turn, SERVER_MODE)
                        build_seconds[saver] += seconds
            done = mark
            for saver in caps:
                if mark > caps[saver]:
                    continue
                cfg = config(threads[saver])
                graph, writer = graphs[saver], savers[saver]
                calls: dict[str, Callable[[], Awaitable[Any]]] = {
                    "state": lambda graph=graph, cfg=cfg: graph.aget_state(cfg),
                    "tuple": lambda writer=writer, cfg=cfg: writer.aget_tuple(cfg),
                }
                if saver == LINEAR:
                    assert cold is not None
                    calls["tuple_cold"] = lambda cfg=cfg: cold.aget_tuple(cfg)
                for key, call in calls.items():
                    times[saver][key][mark] = await median_read_ms(call, reads)
                state = await graph.aget_state(cfg)
                if len(state.values["messages"]) != 2 * mark:
                    raise RuntimeError(f"{saver}: expected {2 * mark} messages at turn {mark}")

    result: dict[str, Any] = {
        "benchmark": "read_latest",
        "turns": caps,
        "reads": reads,
        "mode": SERVER_MODE,
        "build_seconds": {s: round(v, 2) for s, v in build_seconds.items()},
        "read_ms": {
            saver: {key: {m: round(v, 3) for m, v in by_mark.items()} for key, by_mark in d.items()}
            for saver, d in times.items()
        },
        "checks": [],
    }
    for key, label in READS:
        linear = times[LINEAR][key]
        stock = times[STOCK].get(key)
        stock_growth = stock[stock_turns] / stock[FIRST_MARK] if stock else None
        note = f"linear {linear[FIRST_MARK]:.2f} -> {linear[turns]:.2f} ms"
        if stock:
            note += (
                f"; stock {stock[FIRST_MARK]:.2f} -> {stock[stock_turns]:.2f} ms "
                f"(stock capped at {stock_turns} turns); at {stock_turns} turns linear "
                f"{linear[stock_turns]:.2f} ms vs stock {stock[stock_turns]:.2f} ms"
            )
        result["checks"].append(
            check(
                f"read latest, turn {turns} / turn {FIRST_MARK}: {label}",
                mode=SERVER_MODE,
                value=linear[turns] / linear[FIRST_MARK],
                target=TARGET,
                op="<=",
                unit="x",
                stock=stock_growth,
                note=note,
            )
        )
    # Issue 12: no dearer than LangGraph's in-memory saver's get_tuple on the same thread,
    # which also builds fresh objects (it unpickles its stored blob on every read).
    memory = times[MEMORY]["tuple"]
    for key in ("tuple", "tuple_cold"):
        for mark in marks:
            value = times[LINEAR][key][mark] / memory[mark]
            result["checks"].append(
                check(
                    f"read latest at turn {mark}, x in-memory get_tuple: {dict(READS)[key]}",
                    mode=SERVER_MODE,
                    value=value,
                    target=1.0,
                    op="<=",
                    unit="x",
                    note=f"linear {times[LINEAR][key][mark]:.2f} ms, in-memory "
                    f"{memory[mark]:.2f} ms",
                )
            )
    return result


def report(result: dict[str, Any]) -> None:
    caps = result["turns"]
    print(
        f"== read latest state: linear thread to {caps[LINEAR]} turns, stock to {caps[STOCK]} "
        f"(capped: it grows quadratically), durability={result['mode']}; median of "
        f"{result['reads']} reads =="
    )
    print(
        f"  building the threads took {result['build_seconds'][LINEAR]:.1f} s (linear), "
        f"{result['build_seconds'][STOCK]:.1f} s (stock) and "
        f"{result['build_seconds'][MEMORY]:.1f} s (in-memory)"
    )
    marks = sorted({m for d in result["read_ms"][LINEAR].values() for m in d})
    rows = []
    for saver, by_key in result["read_ms"].items():
        for key, label in READS:
            if key in by_key:
                rows.append((f"{saver}: {label}", *(by_key[key].get(m) for m in marks)))
    print_table(("read (ms)", *(f"turn {m}" for m in marks)), rows)
    print_checks(result["checks"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__)
    cli.add_argument("--turns", type=int, default=1000, help="turns of the linear thread")
    cli.add_argument(
        "--stock-turns", type=int, default=300, help="turns of the stock thread (its cap)"
    )
    cli.add_argument("--reads", type=int, default=50, help="reads per measurement")
    args = cli.parse_args(argv)
    if not FIRST_MARK <= args.stock_turns <= args.turns or args.reads < 1:
        cli.error(f"need {FIRST_MARK} <= --stock-turns <= --turns and --reads >= 1")

    return run_cli(
        args, measure, report, turns=args.turns, stock_turns=args.stock_turns, reads=args.reads
    )


if __name__ == "__main__":
    main()
