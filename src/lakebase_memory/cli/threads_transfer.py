"""`lakebase-memory threads import-stock|export-stock`: threads in and out of the stock format.

`import-stock` rewrites threads that LangGraph's stock `PostgresSaver` wrote into the linear
format (they stay readable without it; importing makes them small). `export-stock` writes
threads back in the stock format, in place or into another database, so that LangGraph's own
saver reads them. The work is `lakebase_memory.memory.saver.transfer`'s; these commands find
the memory database as the server does and report thread by thread. `cli/threads.py` registers
them under `threads`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import psycopg
import typer
from psycopg import AsyncConnection

from lakebase_memory.cli.memory_database import fail, human_size, memory_database
from lakebase_memory.config import Settings, load_settings
from lakebase_memory.errors import LakebaseMemoryError, first_line
from lakebase_memory.memory.saver.transfer import (
    DEFAULT_BATCH_SIZE,
    ThreadResult,
    TransferReport,
    UnknownThreadError,
    export_stock_threads,
    import_stock_threads,
)

Work = Callable[[AsyncConnection[Any], Callable[[ThreadResult], None]], Awaitable[TransferReport]]

ThreadIds = Annotated[
    list[str] | None,
    typer.Argument(help="Ids of the threads to move.", show_default=False),
]
AllThreads = Annotated[bool, typer.Option("--all", help="Every thread in the memory database.")]
BatchSize = Annotated[
    int,
    typer.Option("--batch-size", min=1, help="With --all: how many thread ids to list at a time."),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Move each thread and roll it back: show what would change, change nothing.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def import_stock(
    thread_ids: ThreadIds = None,
    all_threads: AllThreads = False,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Rewrite threads saved by LangGraph's stock PostgresSaver into the linear format.

    Same checkpoints, history and pending writes, each message stored once. Threads already
    in the linear format are skipped, so running it again is harmless.
    """
    ids = _chosen(thread_ids, all_threads)
    report = _run(
        lambda conn, on_thread: import_stock_threads(
            conn, ids, batch_size=batch_size, dry_run=dry_run, on_thread=on_thread
        ),
        dry_run=dry_run,
        as_json=as_json,
    )
    _finish(report, as_json)


def export_stock(
    thread_ids: ThreadIds = None,
    all_threads: AllThreads = False,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="URL",
            help="Write the threads into this PostgreSQL database (its checkpoint tables are "
            "created) instead of converting them in place; the memory database is not changed.",
            show_default=False,
        ),
    ] = None,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Write threads in LangGraph's stock PostgresSaver format, readable by LangGraph alone.

    In place (the default), each thread's message-log references become full stock values and
    its log entries go; with --to, the threads are copied into another database.
    """
    ids = _chosen(thread_ids, all_threads)
    report = _run(
        lambda conn, on_thread: export_stock_threads(
            conn, ids, target=to, batch_size=batch_size, dry_run=dry_run, on_thread=on_thread
        ),
        dry_run=dry_run,
        as_json=as_json,
    )
    _finish(report, as_json)


def _chosen(thread_ids: list[str] | None, all_threads: bool) -> list[str] | None:
    """The thread ids to move, or None for all; a usage error for neither or both."""
    if all_threads and thread_ids:
        raise typer.BadParameter(
            "name thread ids or pass --all, not both", param_hint="THREAD_IDS / --all"
        )
    if not all_threads and not thread_ids:
        raise typer.BadParameter(
            "name the threads to move (their ids), or pass --all for every thread",
            param_hint="THREAD_IDS / --all",
        )
    return None if all_threads else list(thread_ids or [])


def _run(work: Work, *, dry_run: bool, as_json: bool) -> TransferReport:
    """Run `work` on the memory database; a sentence and exit code 1 for anything expected."""
    verb = "would be" if dry_run else "was"

    def progress(result: ThreadResult) -> None:
        if not as_json:
            typer.echo(_line(result, verb))

    settings = load_settings()
    try:
        return asyncio.run(_on_memory_database(settings, work, progress, dry_run))
    except UnknownThreadError as error:
        fail(f"{error}. List the threads with `lakebase-memory threads list`.")
    except LakebaseMemoryError as error:
        fail(str(error))
    except psycopg.OperationalError as error:
        cause = first_line(error)
        fail(
            f"lost the connection to the memory database: {cause}. Threads already reported "
            "were moved; run the command again for the rest (moved threads are skipped)."
        )


async def _on_memory_database(
    settings: Settings,
    work: Work,
    progress: Callable[[ThreadResult], None],
    dry_run: bool,
) -> TransferReport:
    hint = "run `lakebase-memory setup` first, or the command without --dry-run"
    async with memory_database(settings, write=not dry_run, not_current=hint) as conn:
        return await work(conn, progress)


def _line(result: ThreadResult, verb: str) -> str:
    if result.status == "skipped":
        return f"- {result.thread_id}: skipped, {result.reason}"
    if result.status == "failed":
        return f"✗ {result.thread_id}: failed, {result.reason}"
    size = human_size(result.bytes_before)
    if result.bytes_after is not None:
        size += f" → {human_size(result.bytes_after)}"
    return (
        f"✓ {result.thread_id}: {result.checkpoints} checkpoint(s), {result.writes} pending "
        f"write(s) {verb} {result.status}, {size}"
    )


def _finish(report: TransferReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        verb = {"import": "imported", "export": "exported"}[report.direction]
        moved = f"{len(report.moved)} thread(s) {'would be ' if report.dry_run else ''}{verb}"
        if report.direction == "export":
            moved += f" ({report.target})"
        line = f"{moved}, {len(report.skipped)} skipped"
        if report.failed:
            line += f", {len(report.failed)} failed"
        if report.moved:
            line += f"; {human_size(report.bytes_before)}"
            if report.bytes_after is not None:
                line += f" → {human_size(report.bytes_after)}"
        typer.echo(line + (" (dry run: nothing was changed)" if report.dry_run else ""))
    if report.failed:
        raise typer.Exit(1)
