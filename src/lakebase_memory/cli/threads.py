"""`lakebase-memory threads`: list, show, delete, prune and erase threads of the memory database.

Every command finds the memory database as the server does (the same settings and targets)
and works through `lakebase_memory.memory.lifecycle.ThreadStore`, so the CLI, the server and
library users delete exactly the same rows. Expected failures (unknown thread, unreachable
database, a destructive command without --yes where nobody can be asked) print one sentence
and exit with code 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, NoReturn, TypeVar

import psycopg
import typer
from psycopg import AsyncConnection

from lakebase_memory.cli.memory_database import fail, human_size, memory_database
from lakebase_memory.cli.threads_transfer import export_stock, import_stock
from lakebase_memory.config import Settings, load_settings
from lakebase_memory.errors import LakebaseMemoryError, first_line
from lakebase_memory.memory import ROLES, message_text
from lakebase_memory.memory.lifecycle import (
    MAX_PAGE,
    InvalidCursorError,
    ThreadStats,
    ThreadStore,
    iso_utc,
)
from lakebase_memory.memory.retention import RetentionPolicy

T = TypeVar("T")

app = typer.Typer(
    help="List, show, delete, prune and erase the threads of the memory database.",
    no_args_is_help=True,
)
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@app.command("list")
def list_threads(
    user: Annotated[
        str | None, typer.Option("--user", help="Only this user's threads.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_PAGE, help="Page size.")] = 20,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", help="Next page: the cursor the previous page printed."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Threads, most recently active first: id, user, messages, size, last activity, title."""

    async def work(store: ThreadStore, _: AsyncConnection[Any]) -> Any:
        return await store.list(user, limit=limit, cursor=cursor)

    page = _run(work, write=False)
    if as_json:
        body = {"threads": [t.to_json() for t in page.threads], "next_cursor": page.next_cursor}
        typer.echo(json.dumps(body, indent=2))
        return
    if not page.threads:
        typer.echo("no threads" + (f" of user {user}" if user else ""))
        return
    for line in _table(page.threads):
        typer.echo(line)
    if page.next_cursor:
        typer.echo(f"more: --cursor {page.next_cursor}")


@app.command("show")
def show(
    thread_id: Annotated[str, typer.Argument(help="The thread's id.")],
    messages: Annotated[
        int, typer.Option("--messages", min=0, help="How many of the latest messages to show.")
    ] = 10,
    as_json: AsJson = False,
) -> None:
    """A thread's stats and its latest messages (from its latest checkpoint)."""

    async def work(store: ThreadStore, conn: AsyncConnection[Any]) -> Any:
        stats = await store.get(thread_id)
        if stats is None:
            return None, []
        # Imported here: the saver (and LangGraph) load only for the command that reads state.
        from lakebase_memory.memory.saver import AsyncLinearPostgresSaver

        latest = await AsyncLinearPostgresSaver(conn, cache_threads=0).aget_tuple(
            {"configurable": {"thread_id": thread_id}}
        )
        values = latest.checkpoint["channel_values"] if latest else {}
        return stats, list(values.get("messages") or [])

    stats, history = _run(work, write=False)
    if stats is None:
        _unknown(thread_id)
    shown = history[-messages:] if messages else []
    items = [
        {"id": m.id, "role": ROLES.get(m.type, m.type), "content": message_text(m)} for m in shown
    ]
    if as_json:
        typer.echo(json.dumps({"thread": stats.to_json(), "messages": items}, indent=2))
        return
    for label, value in (
        ("thread", stats.thread_id),
        ("user", stats.user_id or "-"),
        ("title", stats.title or "-"),
        ("messages", str(stats.message_count)),
        ("size", human_size(stats.size_bytes)),
        ("created", _when(stats.created_at)),
        ("last active", _when(stats.last_activity)),
    ):
        typer.echo(f"{label:<12} {value}")
    if items:
        typer.echo(f"\nlatest {len(items)} of {len(history)} message(s):")
        for item in items:
            typer.echo(f"  {item['role']}: {_one_line(item['content'], 160)}")


@app.command("delete")
def delete(
    thread_ids: Annotated[list[str], typer.Argument(help="Ids of the threads to delete.")],
    yes: Yes = False,
    as_json: AsJson = False,
) -> None:
    """Delete threads whole: checkpoints, writes, message log, chat, messages and votes."""
    ids = list(dict.fromkeys(thread_ids))

    async def work(store: ThreadStore, _: AsyncConnection[Any]) -> Any:
        # One connection for the check, the question and the deletion: one login.
        if unknown := [t for t in ids if await store.get(t) is None]:
            _unknown(*unknown)
        _confirm(f"Delete {len(ids)} thread(s) and all their memory ({', '.join(ids)})?", yes)
        return await store.delete_many(ids)

    # Tables that are not current stop it before anything is asked or deleted, as for `show`.
    deleted = _run(work, write=True, migrate=False)
    if as_json:
        typer.echo(json.dumps(deleted.to_json(), indent=2))
    else:
        typer.echo(f"deleted {deleted.threads} thread(s); {_counts(deleted.to_json())}")


@app.command("prune")
def prune(
    older_than_days: Annotated[
        float | None,
        typer.Option(
            "--older-than-days",
            help="Delete threads inactive for longer (default: MEMORY_RETENTION_DAYS).",
            show_default=False,
        ),
    ] = None,
    keep_per_user: Annotated[
        int | None,
        typer.Option(
            "--keep-per-user",
            min=1,
            help="Keep each user's N newest threads (default: MEMORY_MAX_THREADS_PER_USER).",
            show_default=False,
        ),
    ] = None,
    keep_latest_checkpoint: Annotated[
        bool,
        typer.Option(
            "--keep-latest-checkpoint",
            help="Threads older than --older-than-days keep their latest checkpoint (the "
            "conversation) instead of being deleted; only their history goes.",
        ),
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Threads per transaction (default: MEMORY_RETENTION_BATCH_SIZE).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; change nothing.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Apply the retention policy once, in batches (the server does it every interval)."""
    settings = load_settings()
    days = older_than_days if older_than_days is not None else settings.memory_retention_days
    keep = keep_per_user if keep_per_user is not None else settings.memory_max_threads_per_user
    if days is None and keep is None:
        fail(
            "nothing to prune: pass --older-than-days or --keep-per-user (or set "
            "MEMORY_RETENTION_DAYS / MEMORY_MAX_THREADS_PER_USER)"
        )
    try:
        policy = RetentionPolicy(days, keep, keep_latest_checkpoint)
    except ValueError as error:
        fail(str(error))
    size = batch_size or settings.memory_retention_batch_size

    async def work(store: ThreadStore, _: AsyncConnection[Any]) -> Any:
        return await store.apply_retention(policy, batch_size=size, dry_run=dry_run)

    report = _run(work, write=not dry_run, settings=settings)
    if as_json:
        typer.echo(json.dumps({"policy": policy.describe(), **report.to_json()}, indent=2))
        return
    if report.skipped:
        typer.echo("another process is applying retention right now; nothing done, try later")
        return
    verb = "would delete" if dry_run else "deleted"
    line = (
        f"{policy.describe()}: {verb} {report.expired} expired and {report.excess} excess thread(s)"
    )
    if policy.keep_latest_checkpoint:
        line += f", {'would trim' if dry_run else 'trimmed'} {report.trimmed} old thread(s)"
    if not dry_run:
        line += f" in {report.batches} batch(es); rows: {_counts(report.deleted.to_json())}"
    typer.echo(line + (" (dry run: nothing was changed)" if dry_run else ""))


@app.command("erase-user")
def erase_user(
    user: Annotated[str, typer.Argument(help="The user whose data to erase.")],
    yes: Yes = False,
    as_json: AsJson = False,
) -> None:
    """Erase everything of one user: every thread, checkpoint, message, chat and vote."""
    _confirm(f"Erase every thread and all the memory of user {user!r}? This cannot be undone.", yes)
    settings = load_settings()

    async def work(store: ThreadStore, _: AsyncConnection[Any]) -> Any:
        return await store.erase_user(user, batch_size=settings.memory_retention_batch_size)

    erased = _run(work, write=True, settings=settings)
    if as_json:
        typer.echo(json.dumps({"user": user, "deleted": erased.to_json()}, indent=2))
    else:
        typer.echo(f"erased user {user}: {erased.threads} thread(s); {_counts(erased.to_json())}")


# Moving threads in and out of LangGraph's stock format (cli/threads_transfer.py).
app.command("import-stock")(import_stock)
app.command("export-stock")(export_stock)


# -- plumbing ---------------------------------------------------------------------------------


def _run(
    work: Callable[[ThreadStore, AsyncConnection[Any]], Awaitable[T]],
    *,
    write: bool,
    migrate: bool = True,
    settings: Settings | None = None,
) -> T:
    """Run `work` on the memory database, over one connection (one login); a sentence and exit
    code 1 for expected failures. `write` and `migrate` as for `memory_database`."""
    settings = settings or load_settings()
    try:
        return asyncio.run(_on_store(settings, work, write=write, migrate=migrate))
    except (LakebaseMemoryError, InvalidCursorError) as error:
        fail(str(error))
    except psycopg.OperationalError as error:
        fail(f"the memory database is not available: {first_line(error)}")
    except psycopg.Error as error:  # e.g. a role without DELETE: `lakebase-memory grant`
        fail(f"the memory database refused: {first_line(error)}")


async def _on_store(
    settings: Settings,
    work: Callable[[ThreadStore, AsyncConnection[Any]], Awaitable[T]],
    *,
    write: bool,
    migrate: bool,
) -> T:
    async with memory_database(
        settings,
        write=write,
        migrate=migrate,
        not_current="start the app once or run `lakebase-memory setup`",
    ) as conn:
        return await work(ThreadStore(conn, settings.checkpoint_schema), conn)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        fail("refusing to delete without confirmation: pass --yes (no terminal to ask on)")
    if not typer.confirm(question, default=False):
        fail("cancelled: nothing was deleted")


def _unknown(*thread_ids: str) -> NoReturn:
    names = ", ".join(repr(t) for t in thread_ids)
    fail(f"no thread {names} in the memory database; list them with `lakebase-memory threads list`")


def _table(threads: list[ThreadStats]) -> list[str]:
    header = ("THREAD", "USER", "MESSAGES", "SIZE", "LAST ACTIVITY", "TITLE")
    rows = [
        (
            t.thread_id,
            t.user_id or "-",
            str(t.message_count),
            human_size(t.size_bytes),
            _when(t.last_activity),
            _one_line(t.title or "", 40),
        )
        for t in threads
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {2, 3}  # numbers line up on the right
    return [
        "  ".join(
            (cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
            for i, cell in enumerate(row)
        ).rstrip()
        for row in [header, *rows]
    ]


def _when(value: datetime | None) -> str:
    text = iso_utc(value)
    return text[:19].replace("T", " ") + " UTC" if text else "-"


def _one_line(text: str, width: int) -> str:
    words = " ".join(text.split())
    return words if len(words) <= width else words[: width - 1] + "…"


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{value} {name}" for name, value in counts.items() if name != "threads")
