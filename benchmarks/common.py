"""What the benchmarks share: the graph and its fixed-reply model, the text of a turn, the
PostgreSQL server and scratch databases, the savers under comparison, the storage query, the
command line and the printing of tables and targets.

Not a benchmark itself; see `run_all.py` and the scripts next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import statistics
import string
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import psycopg
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph.state import CompiledStateGraph
from psycopg import sql
from psycopg.conninfo import make_conninfo

from lakebase_memory.agent import build_graph
from lakebase_memory.config import Settings
from lakebase_memory.database import DatabaseTarget, EmbeddedPostgres, Pool, TargetKind, open_pool
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver

TEXT_BYTES = 500  # per message; a turn is one 500-byte user message and one 500-byte reply
TURN_TEXT_BYTES = 2 * TEXT_BYTES
ALPHABET = string.ascii_letters + string.digits + "      "

# LangGraph's durability modes: "exit" writes one checkpoint per turn (what the server uses),
# "async" (LangGraph's default) one per step, saved while the next step runs.
SERVER_MODE = "exit"
MODES = ("exit", "async")
Mode = Literal["exit", "async", "sync"]

# Saver names, everywhere: the in-memory baseline, the server's linear saver, LangGraph's stock.
MEMORY, LINEAR, STOCK = "memory", "linear", "stock"
POSTGRES_SAVERS = (LINEAR, STOCK)
SAVERS = (MEMORY, *POSTGRES_SAVERS)
SAVER_LABELS = {
    MEMORY: "InMemorySaver (no database)",
    LINEAR: "AsyncLinearPostgresSaver (the server's)",
    STOCK: "AsyncPostgresSaver (LangGraph's stock)",
}

# Every table either saver writes; a name that does not exist in a database counts 0 bytes.
STORAGE_TABLES = (
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "checkpoint_migrations",
    "ai_chatbot.checkpoint_messages",
    "ai_chatbot.checkpoint_threads",
)
SIZE_SQL = """SELECT name, pg_total_relation_size(to_regclass(name))
FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NOT NULL"""


# --- the graph --------------------------------------------------------------------------------


@functools.cache
def text(kind: str, turn: int) -> str:
    """500 ASCII bytes, pseudo-random so that PostgreSQL's TOAST compression cannot shrink them."""
    rng = random.Random(f"{kind}-{turn}")
    head = f"{kind} {turn:05d} "
    return head + "".join(rng.choices(ALPHABET, k=TEXT_BYTES - len(head)))


class FixedReplyModel(BaseChatModel):
    """Deterministic and instant: a 500-byte answer naming the turn, whatever the history."""

    @property
    def _llm_type(self) -> str:
        return "fixed-reply"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        turn = sum(isinstance(m, HumanMessage) for m in messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(text("reply", turn)))])

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        return self._generate(messages)


def make_graph(checkpointer: BaseCheckpointSaver | None) -> CompiledStateGraph:
    """The server's agent graph (`lakebase_memory.agent.build_graph`) on the fixed-reply model."""
    return build_graph(FixedReplyModel(), "Be brief.", checkpointer)


def config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


async def timed_turn(graph: CompiledStateGraph, thread_id: str, turn: int, mode: Mode) -> float:
    """Run turn `turn` (1-based) of a thread; its latency in seconds."""
    message = {"messages": [HumanMessage(text("user", turn))]}
    start = time.perf_counter()
    await graph.ainvoke(message, config(thread_id), durability=mode)
    return time.perf_counter() - start


def new_id(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """`items` starting at `shift`: who goes first changes from round to round."""
    shift %= max(1, len(items))
    return [*items[shift:], *items[:shift]]


def median_ms(seconds: Iterable[float]) -> float:
    return statistics.median(seconds) * 1000


# --- PostgreSQL -------------------------------------------------------------------------------


@asynccontextmanager
async def postgres_server(url: str | None) -> AsyncIterator[str]:
    """Superuser conninfo of the given server, or of an embedded one stopped afterwards."""
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="lakebase-benchmarks-") as folder:
        embedded = EmbeddedPostgres(Path(folder) / "data")
        conninfo = await asyncio.to_thread(embedded.start)
        try:
            yield conninfo
        finally:
            await asyncio.to_thread(embedded.stop)


@asynccontextmanager
async def scratch_database(admin: str, saver: str | None) -> AsyncIterator[str]:
    """A new database with `saver`'s tables (none for None), dropped afterwards."""
    name = f"bench_{saver or 'plain'}_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = make_conninfo(admin, dbname=name)
    try:
        if saver == STOCK:
            async with AsyncPostgresSaver.from_conn_string(conninfo) as stock:
                await stock.setup()
        elif saver == LINEAR:
            async with AsyncLinearPostgresSaver.from_conn_string(conninfo) as linear:
                await linear.setup()
        yield conninfo
    finally:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            await conn.execute(drop.format(sql.Identifier(name)))


@asynccontextmanager
async def server_pool(conninfo: str, size: int) -> AsyncIterator[Pool]:
    """A pool made as the server makes its own (`open_pool`), of exactly `size` connections."""
    settings = Settings(_env_file=None, db_pool_min_size=size, db_pool_max_size=size)  # type: ignore[call-arg]
    target = DatabaseTarget(TargetKind.POSTGRES, conninfo, "benchmark database")
    pool = await open_pool(target, settings, search_path="public")
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def scratch_pool(admin: str, saver: str | None, size: int) -> AsyncIterator[tuple[str, Pool]]:
    """A scratch database with `saver`'s tables and a server pool of `size` connections on it:
    (its conninfo, the pool); both go away afterwards."""
    async with scratch_database(admin, saver) as conninfo, server_pool(conninfo, size) as pool:
        yield conninfo, pool


def make_saver(saver: str, pool: Pool | None = None, **kwargs: Any) -> BaseCheckpointSaver:
    """A saver by name; the Postgres ones on `pool`, as the server would use them."""
    if saver == MEMORY:
        return InMemorySaver()
    if pool is None:
        raise ValueError(f"the {saver} saver needs a pool")
    if saver == LINEAR:
        return AsyncLinearPostgresSaver(pool, **kwargs)
    if saver == STOCK:
        return AsyncPostgresSaver(pool, **kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown saver {saver!r}")


async def storage_by_table(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    """Bytes on disk of each checkpoint table in `conn`'s database, indexes and TOAST included."""
    cursor = await conn.execute(SIZE_SQL, (list(STORAGE_TABLES),))
    return {str(name): int(size) for name, size in await cursor.fetchall()}


async def storage_bytes(conn: psycopg.AsyncConnection[Any]) -> int:
    """Bytes on disk of all the checkpoint tables in `conn`'s database."""
    return sum((await storage_by_table(conn)).values())


# --- targets ----------------------------------------------------------------------------------


def check(
    name: str,
    *,
    mode: str,
    value: float,
    target: float,
    op: Literal["<=", ">="],
    unit: str,
    stock: float | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One performance target: the linear saver's value, the stock saver's, pass or fail."""
    passed = value <= target if op == "<=" else value >= target
    return {
        "name": name,
        "mode": mode,
        "value": round(value, 3),
        "target": f"{op} {target:.4g}{unit}",
        "unit": unit,
        "passed": passed,
        "stock": None if stock is None else round(stock, 3),
        "vs_stock": round(value / stock, 3) if stock else None,
        "note": note,
    }


def print_table(head: Sequence[str], rows: Iterable[Sequence[Any]], indent: str = "  ") -> None:
    """Columns right-aligned to their widest cell; the first column left-aligned."""
    cells = [[str(h) for h in head], *[[fmt(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    for n, row in enumerate(cells):
        pairs = enumerate(zip(row, widths, strict=True))
        line = "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)
        print(indent + line.rstrip())
        if n == 0:
            print(indent + "  ".join("-" * w for w in widths))


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "PASS" if value else "FAIL"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def print_mode(mode: str) -> None:
    """The heading of a durability mode's results."""
    server = " (the server's mode)" if mode == SERVER_MODE else ""
    print(f"\ndurability={mode}{server}")


def print_checks(checks: Sequence[dict[str, Any]]) -> None:
    """The targets: linear value, stock value, the target, PASS/FAIL, linear/stock."""
    print("\ntargets (linear = AsyncLinearPostgresSaver, stock = AsyncPostgresSaver, same run)")
    print_table(
        ("target", "durability", "linear", "stock", "target", "result", "linear/stock"),
        (
            (
                c["name"],
                c["mode"] + (" (server)" if c["mode"] == SERVER_MODE else ""),
                c["value"],
                c["stock"],
                c["target"],
                c["passed"],
                c["vs_stock"],
            )
            for c in checks
        ),
    )
    for c in checks:
        if c["note"]:
            print(f"  note, {c['name']} ({c['mode']}): {c['note']}")


# --- command line -----------------------------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark takes: where to run and how to print."""
    text = doc or ""
    result = argparse.ArgumentParser(
        description=text.split("\n\n")[0],
        epilog="\n\n".join(text.split("\n\n")[1:]) or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="a PostgreSQL server where this login may CREATE DATABASE (default: $DATABASE_URL, "
        "else an embedded PostgreSQL started for the run)",
    )
    result.add_argument("--json", action="store_true", help="print the results as JSON")
    return result


def modes_argument(value: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in value.split(",") if m.strip())
    for mode in modes:
        if mode not in ("exit", "async", "sync"):
            raise argparse.ArgumentTypeError(f"unknown durability mode {mode!r}")
    if not modes:
        raise argparse.ArgumentTypeError("no durability mode")
    return modes


def add_modes(result: argparse.ArgumentParser) -> None:
    result.add_argument(
        "--modes",
        type=modes_argument,
        default=MODES,
        help="LangGraph durability modes to measure, comma-separated (default: exit,async; "
        "the server uses exit)",
    )


def run_cli(
    args: argparse.Namespace,
    measure: Callable[..., Awaitable[dict[str, Any]]],
    report: Callable[[dict[str, Any]], None],
    **params: Any,
) -> dict[str, Any]:
    """Run `measure(admin_conninfo, **params)` on the chosen server, print the result (as JSON
    with `--json`, else with `report`), return it."""

    async def main() -> dict[str, Any]:
        async with postgres_server(args.database_url) as admin:
            return await measure(admin, **params)

    result = asyncio.run(main())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    sys.stdout.flush()
    return result
