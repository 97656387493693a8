"""Memory cost per turn as threads grow: bytes stored and latency, linear saver vs stock.

`--threads` threads (default 3) per saver and durability mode grow to `--turns` turns (default 300)
of 1 KB of text each (a 500-byte user message, a 500-byte reply; pseudo-random, so TOAST cannot
compress it). The savers run the same graph in the same run on the same PostgreSQL server, turns
interleaved (who goes first rotates) so that they share conditions: LangGraph's in-memory saver (the
no-database baseline), the server's `AsyncLinearPostgresSaver` and LangGraph's stock
`AsyncPostgresSaver`, each Postgres saver on its own pool (`open_pool`, as the server makes it) in
its own scratch database per durability mode. For scale, the graph also runs with no saver at all,
the client sending the whole history at every turn: the graph's own cost of a turn with that much
state, which grows with the thread whatever the saver (the in-memory saver serializes the whole
state at every checkpoint, so it grows too).

Storage is `pg_total_relation_size` of every checkpoint table (LangGraph's four, plus
`ai_chatbot.checkpoint_messages` and `checkpoint_threads` for the linear saver) minus their size
when empty; "x raw text" divides it by the text's bytes (of all threads). Latency at turn m is
the median over the threads of the `--window` turns ending at m (5 per thread by default, 15
samples: on a shared 2-core machine one turn in a few takes twice as long); overhead is that
minus the in-memory saver's at the same turn.

Targets (issue 6): storage at 300 turns <= 3x the raw text (stock: ~440x); latency at turn 300
<= 1.5x that at turn 10 (stock: ~7.6x); overhead at turn 300 <= 3 ms (stock: ~39 ms).

    uv run python benchmarks/memory_growth.py [--turns 300] [--threads 3] [--modes exit,async]
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from typing import Any

import psycopg
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from common import (
    MEMORY,
    POSTGRES_SAVERS,
    SAVER_LABELS,
    SAVERS,
    STOCK,
    TURN_TEXT_BYTES,
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
    storage_by_table,
    storage_bytes,
    text,
    timed_turn,
)

FIRST_MARK = 10
NONE = "none"  # the graph without a saver, the whole history sent at every turn
LABELS = {NONE: "no saver (the client sends the whole history)", **SAVER_LABELS}


class StatelessClient:
    """Runs the graph without a checkpointer, sending the whole conversation each turn."""

    def __init__(self) -> None:
        self.graph = make_graph(None)
        self.history: list[BaseMessage] = []

    async def turn(self, turn: int) -> float:
        self.history.append(HumanMessage(text("user", turn)))
        start = time.perf_counter()
        await self.graph.ainvoke({"messages": self.history})
        seconds = time.perf_counter() - start
        self.history.append(AIMessage(text("reply", turn)))
        return seconds


async def measure(
    admin: str,
    *,
    turns: int = 300,
    threads: int = 3,
    modes: tuple[str, ...] = ("exit", "async"),
    window: int = 5,
) -> dict[str, Any]:
    if turns < FIRST_MARK or threads < 1:
        raise ValueError(f"turns must be at least {FIRST_MARK} and threads at least 1")
    marks = sorted({m for m in (FIRST_MARK, 100, turns) if m <= turns})
    runs = [(mode, saver) for mode in modes for saver in SAVERS]
    async with AsyncExitStack() as stack:
        graphs, probes, thread_ids = {}, {}, {}
        for mode, saver in runs:
            pool = None
            if saver != MEMORY:
                db, pool = await stack.enter_async_context(scratch_pool(admin, saver, 2))
                probe = await psycopg.AsyncConnection.connect(db, autocommit=True)
                stack.push_async_callback(probe.close)
                probes[mode, saver] = probe
            graphs[mode, saver] = make_graph(make_saver(saver, pool))
            thread_ids[mode, saver] = [new_id(f"growth-{mode}-{saver}") for _ in range(threads)]
        empty_tables = {run: await storage_by_table(probe) for run, probe in probes.items()}
        empty = {run: sum(tables.values()) for run, tables in empty_tables.items()}
        sizes: dict[tuple[str, str], dict[int, int]] = {run: {} for run in probes}
        # latencies[run][turn - 1]: that turn's latency in each thread
        latencies: dict[tuple[str, str], list[list[float]]] = {run: [] for run in runs}
        stateless, no_saver = [StatelessClient() for _ in range(threads)], ("", NONE)
        latencies[no_saver] = []
        for turn in range(1, turns + 1):
            for run in [*runs, no_saver]:
                latencies[run].append([])
            for thread in range(threads):
                for run in rotated([*runs, no_saver], turn + thread):
                    if run == no_saver:
                        seconds = await stateless[thread].turn(turn)
                    else:
                        thread_id = thread_ids[run][thread]
                        seconds = await timed_turn(graphs[run], thread_id, turn, run[0])
                    latencies[run][-1].append(seconds)
            if turn in marks:
                for run, probe in probes.items():
                    sizes[run][turn] = await storage_bytes(probe) - empty[run]
        by_table = {
            run: {
                name: size - empty_tables[run].get(name, 0)
                for name, size in (await storage_by_table(probe)).items()
            }
            for run, probe in probes.items()
        }

    def at(run: tuple[str, str], mark: int) -> float:
        return median_ms(s for turn in latencies[run][max(0, mark - window) : mark] for s in turn)

    result: dict[str, Any] = {
        "benchmark": "memory_growth",
        "turns": turns,
        "threads": threads,
        "window": window,
        "text_bytes_per_turn": TURN_TEXT_BYTES,
        "no_saver_ms": {m: round(at(no_saver, m), 3) for m in marks},
        "modes": {},
        "checks": [],
    }
    for mode in modes:
        rows: dict[str, list[dict[str, Any]]] = {}
        for saver in SAVERS:
            run, previous = (mode, saver), (0, 0)
            rows[saver] = []
            for m in marks:
                row: dict[str, Any] = {"turns": m, "median_ms": round(at(run, m), 3)}
                if saver != MEMORY:
                    total = sizes[run][m]
                    row |= {
                        "overhead_ms": round(at(run, m) - at((mode, MEMORY), m), 3),
                        "stored_mb": round(total / threads / 1e6, 3),
                        "kb_per_turn": round(
                            (total - previous[1]) / threads / (m - previous[0]) / 1e3, 1
                        ),
                        "x_raw_text": round(total / (threads * m * TURN_TEXT_BYTES), 2),
                        "empty_tables_kb": round(empty[run] / 1e3, 1),
                    }
                    previous = (m, total)
                rows[saver].append(row)
        result["modes"][mode] = rows
        result.setdefault("stored_kb_by_table", {})[mode] = {
            saver: {name: round(b / threads / 1e3, 1) for name, b in by_table[mode, saver].items()}
            for saver in POSTGRES_SAVERS
        }
        first, last = {s: rows[s][0] for s in SAVERS}, {s: rows[s][-1] for s in SAVERS}
        growth = {s: last[s]["median_ms"] / first[s]["median_ms"] for s in SAVERS}
        graph_growth = at(no_saver, turns) / at(no_saver, FIRST_MARK)
        result["checks"] += [
            check(
                f"storage at {turns} turns, x raw text",
                mode=mode,
                value=last["linear"]["x_raw_text"],
                target=3,
                op="<=",
                unit="x",
                stock=last[STOCK]["x_raw_text"],
            ),
            check(
                f"turn latency, turn {turns} / turn {FIRST_MARK}",
                mode=mode,
                value=growth["linear"],
                target=1.5,
                op="<=",
                unit="x",
                stock=growth[STOCK],
                note=f"in-memory saver: {growth[MEMORY]:.2f}x; the graph alone (no saver, "
                f"whole history sent): {graph_growth:.2f}x",
            ),
            check(
                f"memory overhead at turn {turns}, ms",
                mode=mode,
                value=last["linear"]["overhead_ms"],
                target=3,
                op="<=",
                unit=" ms",
                stock=last[STOCK]["overhead_ms"],
                note="the in-memory saver grows too (it serializes the whole state at every "
                f"checkpoint); over the graph with no saver: linear "
                f"{last['linear']['median_ms'] - at(no_saver, turns):.2f} ms, stock "
                f"{last[STOCK]['median_ms'] - at(no_saver, turns):.2f} ms",
            ),
        ]
    return result


def report(result: dict[str, Any]) -> None:
    print(
        f"== memory growth: {result['threads']} thread(s) of {result['turns']} turns per saver, "
        f"{result['text_bytes_per_turn']} bytes of text per turn ==\n"
        f"latency = median over the threads of the {result['window']} turns ending at the mark; "
        f"overhead = minus the in-memory saver's; stored (per thread) = all checkpoint tables "
        f"minus their empty size, over the threads; KB/turn = growth since the previous mark"
    )
    graph = ", ".join(f"turn {m}: {ms:.2f} ms" for m, ms in result["no_saver_ms"].items())
    print(f"{LABELS[NONE]}, any mode: {graph}")
    head = ("turns", "median ms", "overhead ms", "stored MB", "KB/turn", "x raw text")
    keys = ("turns", "median_ms", "overhead_ms", "stored_mb", "kb_per_turn", "x_raw_text")
    for mode, rows in result["modes"].items():
        print_mode(mode)
        for saver, saver_rows in rows.items():
            print(f" {LABELS[saver]}")
            print_table(head, ([row.get(k) for k in keys] for row in saver_rows))
        tables = result["stored_kb_by_table"][mode]
        names = sorted({name for by_name in tables.values() for name in by_name})
        print(f" KB stored by table at turn {result['turns']}, per thread (with indexes and TOAST)")
        print_table(
            ("table", *tables), ([name, *(tables[s].get(name) for s in tables)] for name in names)
        )
    print_checks(result["checks"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__)
    cli.add_argument("--turns", type=int, default=300, help="turns in each thread (>= 10)")
    cli.add_argument("--threads", type=int, default=3, help="threads per saver and mode")
    cli.add_argument("--window", type=int, default=5, help="turns per thread per latency median")
    add_modes(cli)
    args = cli.parse_args(argv)
    if args.turns < FIRST_MARK or args.threads < 1:
        cli.error(f"--turns must be at least {FIRST_MARK}, --threads at least 1")

    return run_cli(
        args,
        measure,
        report,
        turns=args.turns,
        threads=args.threads,
        modes=args.modes,
        window=args.window,
    )


if __name__ == "__main__":
    main()
