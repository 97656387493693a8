"""The cost of a turn on a short thread, against LangGraph's in-memory saver on the same graph.

`--threads` threads (default 30) of `--turns` turns (default 10) per saver and durability mode,
1 KB of text per turn; the savers run the same graph in the same run on the same PostgreSQL
server, interleaved turn by turn and thread by thread (who goes first rotates) so that they
share conditions: LangGraph's `InMemorySaver` (memory in RAM, the baseline), the server's
`AsyncLinearPostgresSaver` and LangGraph's stock `AsyncPostgresSaver`, each Postgres saver on
its own pool (`open_pool`, as the server makes it) in its own scratch database. A saver's cost
is the median latency of turns `--from`..`--turns` (default 6-10) over all its threads.

Targets: a turn with the linear saver costs at most 1.5x the in-memory saver's in the same
durability mode (issue 6; measured when it was filed: in-memory 1.6 ms, stock 4.8 ms), and
adds at most 1.0 ms to it (issue 12; measured when it was filed: 1.66 ms).

    uv run python benchmarks/short_threads.py [--threads 30] [--turns 10] [--json]
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from common import (
    MEMORY,
    POSTGRES_SAVERS,
    SAVER_LABELS,
    SAVERS,
    STOCK,
    add_modes,
    check,
    make_graph,
    make_saver,
    median_ms,
    new_id,
    parser,
    print_checks,
    print_mode,
    print_table,
    rotated,
    run_cli,
    scratch_pool,
    timed_turn,
)


async def measure(
    admin: str,
    *,
    threads: int = 30,
    turns: int = 10,
    first: int = 6,
    modes: tuple[str, ...] = ("exit", "async"),
) -> dict[str, Any]:
    if not 1 <= first <= turns:
        raise ValueError("need 1 <= first <= turns")
    runs = [(mode, saver) for mode in modes for saver in SAVERS]
    async with AsyncExitStack() as stack:
        savers = {MEMORY: make_saver(MEMORY)}
        for saver in POSTGRES_SAVERS:
            _, pool = await stack.enter_async_context(scratch_pool(admin, saver, 2))
            savers[saver] = make_saver(saver, pool)
        graphs = {saver: make_graph(checkpointer) for saver, checkpointer in savers.items()}
        ids = {run: [new_id(f"short-{run[0]}-{run[1]}") for _ in range(threads)] for run in runs}
        samples: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
        step = 0
        for turn in range(1, turns + 1):
            for thread in range(threads):
                step += 1
                for mode, saver in rotated(runs, step):
                    seconds = await timed_turn(graphs[saver], ids[mode, saver][thread], turn, mode)
                    if turn >= first:
                        samples[mode, saver].append(seconds)

    result: dict[str, Any] = {
        "benchmark": "short_threads",
        "threads": threads,
        "turns": turns,
        "measured_turns": [first, turns],
        "modes": {},
        "checks": [],
    }
    for mode in modes:
        ms = {saver: median_ms(samples[mode, saver]) for saver in SAVERS}
        result["modes"][mode] = {
            saver: {
                "median_ms": round(ms[saver], 3),
                "p90_ms": round(sorted(samples[mode, saver])[int(0.9 * (n - 1))] * 1000, 3),
                "x_in_memory": round(ms[saver] / ms[MEMORY], 3),
                "samples": n,
            }
            for saver in SAVERS
            if (n := len(samples[mode, saver]))
        }
        result["checks"].append(
            check(
                f"short-thread turn, x in-memory saver ({threads} threads x {turns} turns)",
                mode=mode,
                value=ms["linear"] / ms[MEMORY],
                target=1.5,
                op="<=",
                unit="x",
                stock=ms[STOCK] / ms[MEMORY],
                note=f"in-memory {ms[MEMORY]:.2f} ms, linear {ms['linear']:.2f} ms, "
                f"stock {ms[STOCK]:.2f} ms per turn",
            )
        )
        # Issue 12: what memory adds to the turn, in milliseconds (its floor is one round
        # trip and one WAL flush).
        result["checks"].append(
            check(
                "short-thread turn, memory overhead (linear minus in-memory), ms",
                mode=mode,
                value=ms["linear"] - ms[MEMORY],
                target=1.0,
                op="<=",
                unit=" ms",
                stock=ms[STOCK] - ms[MEMORY],
            )
        )
    return result


def report(result: dict[str, Any]) -> None:
    first, last = result["measured_turns"]
    print(
        f"== short threads: {result['threads']} threads x {result['turns']} turns per saver; "
        f"latency of turns {first}-{last}, all threads =="
    )
    for mode, savers in result["modes"].items():
        print_mode(mode)
        print_table(
            ("saver", "median ms", "p90 ms", "x in-memory", "turns measured"),
            (
                (SAVER_LABELS[s], v["median_ms"], v["p90_ms"], v["x_in_memory"], v["samples"])
                for s, v in savers.items()
            ),
        )
    print_checks(result["checks"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__)
    cli.add_argument("--threads", type=int, default=30, help="threads per saver and mode")
    cli.add_argument("--turns", type=int, default=10, help="turns per thread")
    cli.add_argument(
        "--from", dest="first", type=int, default=6, help="first turn measured (1-based)"
    )
    add_modes(cli)
    args = cli.parse_args(argv)
    if args.threads < 1 or not 1 <= args.first <= args.turns:
        cli.error("need --threads >= 1 and 1 <= --from <= --turns")

    return run_cli(
        args,
        measure,
        report,
        threads=args.threads,
        turns=args.turns,
        first=args.first,
        modes=args.modes,
    )


if __name__ == "__main__":
    main()
