"""The server's whole turn as its thread grows: what memory costs the app, not only the saver.

`--threads` threads (default 3) grow to `--turns` turns (default 300) of 1 KB of text each
through the server's own turn path, as a request runs it (`prepare_turn`, then `run_turn` to
its last event): the thread's chat row, the turn lease, the look at the stored history (which
part of `input` is new), the agent run on the linear saver, the chat's `"Message"` rows and
the lease's release. The app is built as `start-app` builds it (`AppRuntime.start`, its pool
and schema) on a scratch database, with the benchmarks' fixed-reply model. Baseline, in the
same run, interleaved turn by turn: the same graph with no saver, the client sending the whole
history (the graph's own cost of a turn with that much state).

Printed at turn 10, 100 and `--turns`: the median turn latency (over the threads, of the
`--window` turns ending there), the graph alone's, their difference (what memory costs the
turn), and the time in each database step; then each one's growth, turn `--turns` / turn 10.
Target (issue 12): the memory part at turn `--turns` within 1.3x of its part at turn 10 (measured
when the issue was filed: 1.51x): the app around the saver keeps a turn's memory cost from
growing with the thread.

    uv run python benchmarks/server_turns.py [--turns 300] [--threads 3] [--json]
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from common import (
    SERVER_MODE,
    FixedReplyModel,
    check,
    median_ms,
    new_id,
    parser,
    print_checks,
    print_table,
    rotated,
    run_cli,
    scratch_database,
    text,
)
from lakebase_memory.config import Settings
from lakebase_memory.server.protocol import ResponsesRequest
from lakebase_memory.server.runtime import AppRuntime
from lakebase_memory.server.turns import prepare_turn, run_turn
from memory_growth import FIRST_MARK, StatelessClient

SERVER, ALONE = "server", "graph alone"
# The turn's database steps: (label, object attribute path, method). The look at the stored
# history reads through the saver too, so "saver reads" includes the look's read.
STEPS = (
    ("chat row", "threads", "claim"),
    ("lease", "checkpointer", "aacquire_turn"),
    ("lease", "checkpointer", "arelease_turn"),
    ("history look", "graph", "aget_state"),
    ("saver reads", "checkpointer", "aget_tuple"),
    ("saver write", "checkpointer", "aput"),
    ("chat messages", "messages", "sync"),
)
STEP_NAMES = tuple(dict.fromkeys(label for label, _, _ in STEPS))


def time_steps(runtime: AppRuntime, spent: dict[str, float]) -> None:
    """Wrap each step's method on the runtime's objects: its time adds up in `spent`."""
    for label, owner_name, method in STEPS:
        owner = getattr(runtime, owner_name)

        def wrap(real: Callable[..., Awaitable[Any]], label: str = label) -> Any:
            async def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await real(*args, **kwargs)
                finally:
                    spent[label] += time.perf_counter() - start

            return timed

        setattr(owner, method, wrap(getattr(owner, method)))


async def server_turn(runtime: AppRuntime, thread_id: str, turn: int) -> float:
    request = ResponsesRequest.model_validate(
        {
            "input": [{"role": "user", "content": text("user", turn)}],
            "custom_inputs": {"thread_id": thread_id},
        }
    )
    start = time.perf_counter()
    prepared = await prepare_turn(runtime, request, "benchmark-user")
    async for _ in run_turn(runtime, prepared):
        pass
    return time.perf_counter() - start


async def measure(
    admin: str, *, turns: int = 300, threads: int = 3, window: int = 5
) -> dict[str, Any]:
    if turns < FIRST_MARK or threads < 1 or window < 1:
        raise ValueError(f"need turns >= {FIRST_MARK}, threads >= 1 and window >= 1")
    marks = sorted({m for m in (FIRST_MARK, 100, turns) if m <= turns})
    # samples[what][turn - 1]: that turn's seconds in each thread
    samples: dict[str, list[list[float]]] = {k: [] for k in (SERVER, ALONE, *STEP_NAMES)}
    async with scratch_database(admin, None) as database:
        settings = Settings(_env_file=None, database_url=database)  # type: ignore[call-arg]
        runtime = await AppRuntime.start(settings, model=FixedReplyModel())
        try:
            spent = dict.fromkeys(STEP_NAMES, 0.0)
            time_steps(runtime, spent)
            ids = [new_id("server-turns") for _ in range(threads)]
            alone = [StatelessClient() for _ in range(threads)]
            for turn in range(1, turns + 1):
                for series in samples.values():
                    series.append([])
                for thread in range(threads):
                    for who in rotated((SERVER, ALONE), turn + thread):
                        if who == ALONE:
                            samples[ALONE][-1].append(await alone[thread].turn(turn))
                            continue
                        for label in spent:
                            spent[label] = 0.0
                        samples[SERVER][-1].append(await server_turn(runtime, ids[thread], turn))
                        for label, seconds in spent.items():
                            samples[label][-1].append(seconds)
        finally:
            await runtime.close()

    def at(what: str, mark: int) -> float:
        return median_ms(s for turn in samples[what][max(0, mark - window) : mark] for s in turn)

    rows = {
        m: {
            "turn_ms": round(at(SERVER, m), 3),
            "graph_alone_ms": round(at(ALONE, m), 3),
            "memory_ms": round(at(SERVER, m) - at(ALONE, m), 3),
            "steps_ms": {label: round(at(label, m), 3) for label in STEP_NAMES},
        }
        for m in marks
    }
    first, last = rows[FIRST_MARK], rows[turns]

    def growth(a: float, b: float) -> float | None:
        return round(b / a, 2) if a > 0 else None

    return {
        "benchmark": "server_turns",
        "turns": turns,
        "threads": threads,
        "window": window,
        "marks": rows,
        "growth": {
            "turn": growth(first["turn_ms"], last["turn_ms"]),
            "graph_alone": growth(first["graph_alone_ms"], last["graph_alone_ms"]),
            "memory": growth(first["memory_ms"], last["memory_ms"]),
            "steps": {
                label: growth(first["steps_ms"][label], last["steps_ms"][label])
                for label in STEP_NAMES
            },
        },
        "checks": [
            check(
                f"memory part of a server turn, turn {turns} / turn {FIRST_MARK}",
                mode=SERVER_MODE,
                value=(last["memory_ms"] / first["memory_ms"]) if first["memory_ms"] > 0 else 0,
                target=1.3,
                op="<=",
                unit="x",
                note=f"memory {first['memory_ms']:.2f} -> {last['memory_ms']:.2f} ms; whole "
                f"turn {first['turn_ms']:.2f} -> {last['turn_ms']:.2f} ms",
            )
        ],
    }


def report(result: dict[str, Any]) -> None:
    turns = result["turns"]
    print(
        f"== server turns: {result['threads']} thread(s) of {turns} turns through the server's "
        f"turn path; medians over the threads of the {result['window']} turns ending at each "
        "mark; memory = the turn minus the graph alone =="
    )
    head = ("turn", "turn ms", "graph alone ms", "memory ms", *(f"{s} ms" for s in STEP_NAMES))
    print_table(
        head,
        (
            (m, row["turn_ms"], row["graph_alone_ms"], row["memory_ms"],
             *(row["steps_ms"][s] for s in STEP_NAMES))
            for m, row in result["marks"].items()
        ),
    )  # fmt: skip
    grown = result["growth"]
    print(f"\ngrowth, turn {turns} / turn {FIRST_MARK}:")
    print_table(
        ("what", "x"),
        [
            ("whole turn", grown["turn"]),
            ("graph alone (no saver)", grown["graph_alone"]),
            ("memory (turn minus graph alone)", grown["memory"]),
            *((step, x) for step, x in grown["steps"].items()),
        ],
    )
    print_checks(result["checks"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__)
    cli.add_argument("--turns", type=int, default=300, help=f"turns per thread (>= {FIRST_MARK})")
    cli.add_argument("--threads", type=int, default=3, help="threads, interleaved")
    cli.add_argument("--window", type=int, default=5, help="turns per thread per median")
    args = cli.parse_args(argv)
    if args.turns < FIRST_MARK or args.threads < 1 or args.window < 1:
        cli.error(f"need --turns >= {FIRST_MARK}, --threads >= 1 and --window >= 1")
    return run_cli(
        args, measure, report, turns=args.turns, threads=args.threads, window=args.window
    )


if __name__ == "__main__":
    main()
