"""Listing threads and applying retention at a million threads.

A scratch database gets `--threads` (default 1,000,000) rows in `ai_chatbot.checkpoint_threads`
for `--users` users (default 1,000), each with its chat in `ai_chatbot."Chat"`, written by
generate_series (the thread bookkeeping the linear saver keeps; no checkpoint bodies), then
ANALYZE. Timed, median of `--repeat` runs over different users, in milliseconds:

- `ThreadStore.list(user)`: one user's first page (20), and the next page by cursor;
- `ThreadStore.list()`: everyone's first page; `ThreadStore.get(thread)`;
- `ThreadCatalogue.list(user)`: the server's `GET /api/threads` (chats joined with stats);
- retention, each pass in batches of `--batch-size` (one transaction each): a dry run and a
  pass of the age rule expiring 1% of the threads, then a dry run and a pass of the per-user
  rule deleting 1% (each user's oldest), then a pass with nothing left to do.

Target (issue 6): listing a user's threads is fast at a million threads (an index scan, a few
ms at most, whatever the table's size).

    uv run python benchmarks/thread_listing.py [--threads 1000000] [--users 1000] [--json]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from common import check, parser, print_table, run_cli, scratch_database
from lakebase_memory.memory.lifecycle import ThreadStore
from lakebase_memory.memory.retention import RetentionPolicy
from lakebase_memory.memory.threads import ThreadCatalogue
from lakebase_memory.schema import ensure_schema

PAGE = 20
LIST_TARGET_MS = 5.0
# Thread i belongs to user i % users and was last active i minutes ago: every user has threads
# of every age, and the oldest 1% of all threads are spread over all users.
FILL = """
INSERT INTO ai_chatbot.checkpoint_threads
    (thread_id, user_id, created_at, updated_at, message_count, size_bytes)
SELECT 'thread-' || i, 'user-' || (i %% %(users)s),
    now() - i * interval '1 minute' - interval '1 hour', now() - i * interval '1 minute',
    2 * (i %% 150), 2000 * (i %% 150)
FROM generate_series(1, %(threads)s) AS i
"""
FILL_CHATS = """
INSERT INTO ai_chatbot."Chat" (id, "createdAt", title, "userId", "threadId", "updatedAt")
SELECT gen_random_uuid(), (h.created_at AT TIME ZONE 'UTC'), 'chat ' || h.thread_id, h.user_id,
    h.thread_id, (h.updated_at AT TIME ZONE 'UTC')
FROM ai_chatbot.checkpoint_threads h
"""


async def median_ms(run: Callable[[int], Awaitable[Any]], repeat: int) -> float:
    """Median of `repeat` timed calls `run(k)`, after one untimed call to warm up."""
    await run(repeat)
    samples = []
    for k in range(repeat):
        start = time.perf_counter()
        await run(k)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


async def measure(
    admin: str,
    *,
    threads: int = 1_000_000,
    users: int = 1000,
    repeat: int = 50,
    batch_size: int = 500,
) -> dict[str, Any]:
    per_user = threads // users
    timings: dict[str, float] = {}
    passes: list[dict[str, Any]] = []
    async with scratch_database(admin, None) as db:
        await ensure_schema(db, "public")
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            start = time.perf_counter()
            await conn.execute(FILL, {"users": users, "threads": threads})
            await conn.execute(FILL_CHATS)
            await conn.execute("ANALYZE ai_chatbot.checkpoint_threads")
            await conn.execute('ANALYZE ai_chatbot."Chat"')
            fill_seconds = time.perf_counter() - start
        async with (
            ThreadStore.from_conn_string(db) as store,
            AsyncConnectionPool(
                db, kwargs={"autocommit": True, "row_factory": dict_row}, min_size=1, open=False
            ) as pool,
        ):
            catalogue = ThreadCatalogue(pool)  # type: ignore[arg-type]

            def user(k: int) -> str:
                return f"user-{(k * 37) % users}"

            async def second_page(k: int) -> Any:
                first = await store.list(user(k), limit=PAGE)
                return await store.list(user(k), limit=PAGE, cursor=first.next_cursor)

            timings["list one user, first page"] = await median_ms(
                lambda k: store.list(user(k), limit=PAGE), repeat
            )
            timings["list one user, first + next page"] = await median_ms(second_page, repeat)
            timings["list everyone, first page"] = await median_ms(
                lambda k: store.list(limit=PAGE), repeat
            )
            timings["get one thread"] = await median_ms(
                lambda k: store.get(f"thread-{1 + k * 7919}"), repeat
            )
            timings["server GET /api/threads (chats + stats)"] = await median_ms(
                lambda k: catalogue.list(user(k), limit=PAGE), repeat
            )
            # The age rule: the oldest 1% of the threads (last active over `cutoff` minutes ago).
            cutoff_minutes = threads - threads // 100
            age = RetentionPolicy(max_age_days=cutoff_minutes / 1440 + 1e-6)
            keep = per_user - per_user // 100 - per_user // 100
            count = RetentionPolicy(max_threads_per_user=max(1, keep))
            for label, policy, dry_run in (
                ("age rule (1% expired), dry run", age, True),
                ("age rule (1% expired)", age, False),
                (f"per-user rule (keep {keep}), dry run", count, True),
                (f"per-user rule (keep {keep})", count, False),
                ("both rules, nothing left", RetentionPolicy(age.max_age_days, keep), False),
            ):
                start = time.perf_counter()
                report = await store.apply_retention(policy, batch_size=batch_size, dry_run=dry_run)
                elapsed = (time.perf_counter() - start) * 1000
                passes.append(
                    {
                        "pass": label,
                        "ms": round(elapsed, 1),
                        "threads": report.expired + report.excess,
                        "batches": report.batches,
                        "ms_per_batch": round(elapsed / max(report.batches, 1), 1),
                    }
                )
    listing = timings["list one user, first page"]
    return {
        "threads": threads,
        "users": users,
        "fill_seconds": round(fill_seconds, 1),
        "timings_ms": {k: round(v, 3) for k, v in timings.items()},
        "retention": passes,
        "checks": [
            check(
                "list one user's first page at a million threads",
                mode="exit",
                value=listing,
                target=LIST_TARGET_MS,
                op="<=",
                unit=" ms",
                note=f"{threads:,} threads of {users:,} users",
            )
        ],
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"{result['threads']:,} threads of {result['users']:,} users "
        f"(filled and analysed in {result['fill_seconds']} s)"
    )
    print("\nreads (median ms)")
    print_table(("operation", "ms"), result["timings_ms"].items())
    print("\nretention passes")
    print_table(
        ("pass", "ms", "threads", "batches", "ms/batch"),
        (
            (p["pass"], p["ms"], p["threads"], p["batches"], p["ms_per_batch"])
            for p in result["retention"]
        ),
    )
    for c in result["checks"]:
        verdict = "PASS" if c["passed"] else "FAIL"
        print(f"\ntarget: {c['name']}: {c['value']} ms, {c['target']}: {verdict}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__)
    cli.add_argument("--threads", type=int, default=1_000_000, help="threads to create")
    cli.add_argument("--users", type=int, default=1000, help="users they belong to")
    cli.add_argument("--repeat", type=int, default=50, help="timed runs per read (median)")
    cli.add_argument("--batch-size", type=int, default=500, help="threads per retention batch")
    args = cli.parse_args(argv)
    if args.users < 1 or args.threads < 100 * args.users or args.repeat < 1:
        cli.error("need --users >= 1, --threads >= 100 x --users and --repeat >= 1")

    return run_cli(
        args,
        measure,
        report,
        threads=args.threads,
        users=args.users,
        repeat=args.repeat,
        batch_size=args.batch_size,
    )


if __name__ == "__main__":
    main()
