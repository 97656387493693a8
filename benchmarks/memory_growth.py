"""Memory cost per conversation turn as one thread grows, server saver vs LangGraph's stock one.

Both savers (and an in-memory baseline) run the same graph in ONE run on the SAME PostgreSQL
server, each Postgres saver in its own scratch database, turns interleaved so that they share
conditions. Every turn stores 1 KB of text: a 500-byte user message and a 500-byte reply.

    uv run python benchmarks/memory_growth.py [--turns 300] [--database-url URL] [--json]
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
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import sql
from psycopg.conninfo import make_conninfo

from lakebase_memory.agent import build_graph
from lakebase_memory.config import Settings
from lakebase_memory.database import EmbeddedPostgres, open_pool
from lakebase_memory.memory import make_checkpointer
from lakebase_memory.schema import CHECKPOINT_TABLES, ensure_schema

TEXT_BYTES = 500  # per message; a turn is one user message and one reply
WINDOW = 5  # latency median over turns m-4..m
SAVERS = ("server", "stock")
ALPHABET = string.ascii_letters + string.digits + "      "
SIZE_SQL = """SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) AS b FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = 'public' AND c.relname = ANY(%s)"""


@functools.cache
def text(kind: str, turn: int) -> str:
    """500 ASCII bytes, pseudo-random so that PostgreSQL's TOAST compression cannot shrink them."""
    rng = random.Random(f"{kind}-{turn}")
    head = f"{kind} {turn:05d} "
    return head + "".join(rng.choices(ALPHABET, k=TEXT_BYTES - len(head)))


class FixedReplyModel(BaseChatModel):
    """Deterministic: a 500-byte answer naming the turn, whatever the history."""

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


@asynccontextmanager
async def postgres_server(url: str | None) -> AsyncIterator[str]:
    """Superuser conninfo of the given server, or of an embedded one stopped afterwards."""
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="memory-growth-") as folder:
        embedded = EmbeddedPostgres(Path(folder) / "data")
        conninfo = await asyncio.to_thread(embedded.start)
        try:
            yield conninfo
        finally:
            await asyncio.to_thread(embedded.stop)


@asynccontextmanager
async def scratch_database(admin: str, label: str) -> AsyncIterator[str]:
    name = f"memory_growth_{label}_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        conninfo = make_conninfo(admin, dbname=name)
        await ensure_schema(conninfo, "public")
        yield conninfo
    finally:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            await conn.execute(drop.format(sql.Identifier(name)))


def median_ms(latencies: list[float], turn: int) -> float:
    return statistics.median(latencies[max(0, turn - WINDOW) : turn]) * 1000


async def run(turns: int, database_url: str | None) -> dict[str, Any]:
    marks = sorted({m for m in (10, 100, turns) if m <= turns})
    model = FixedReplyModel()
    async with postgres_server(database_url) as admin, AsyncExitStack() as stack:
        dbs = {s: await stack.enter_async_context(scratch_database(admin, s)) for s in SAVERS}
        pool = await open_pool(dbs["server"], Settings(_env_file=None), search_path="public")  # type: ignore[call-arg]
        stack.push_async_callback(pool.close)
        stock = await stack.enter_async_context(AsyncPostgresSaver.from_conn_string(dbs["stock"]))
        graphs = {
            "memory": build_graph(model, "Be brief.", InMemorySaver()),
            "server": build_graph(model, "Be brief.", make_checkpointer(pool)),
            "stock": build_graph(model, "Be brief.", stock),
        }
        probes = {}
        for saver, conninfo in dbs.items():
            probe = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            stack.push_async_callback(probe.close)
            probes[saver] = probe

        async def size(saver: str) -> int:
            cursor = await probes[saver].execute(SIZE_SQL, (list(CHECKPOINT_TABLES),))
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

        empty = {s: await size(s) for s in SAVERS}
        sizes: dict[str, dict[int, int]] = {s: {} for s in SAVERS}
        latencies: dict[str, list[float]] = {name: [] for name in graphs}
        thread = uuid.uuid4().hex
        for turn in range(1, turns + 1):
            names = list(graphs)
            for name in names[turn % 3 :] + names[: turn % 3]:  # rotate who goes first
                config = {"configurable": {"thread_id": f"{thread}-{name}"}}
                message = {"messages": [HumanMessage(text("user", turn))]}
                start = time.perf_counter()
                await graphs[name].ainvoke(message, config)
                latencies[name].append(time.perf_counter() - start)
            if turn in marks:
                for saver in SAVERS:
                    sizes[saver][turn] = await size(saver)
    return report(turns, marks, empty, sizes, latencies)


def report(
    turns: int,
    marks: list[int],
    empty: dict[str, int],
    sizes: dict[str, dict[int, int]],
    latencies: dict[str, list[float]],
) -> dict[str, Any]:
    result: dict[str, Any] = {"turns": turns, "text_bytes_per_turn": 2 * TEXT_BYTES, "savers": {}}
    result["in_memory_ms"] = {m: round(median_ms(latencies["memory"], m), 2) for m in marks}
    for saver in SAVERS:
        rows, previous = [], (0, empty[saver])
        for m in marks:
            total, ms = sizes[saver][m], median_ms(latencies[saver], m)
            rows.append(
                {
                    "turns": m,
                    "total_mb": round(total / 1e6, 3),
                    "added_kb_per_turn": round((total - previous[1]) / (m - previous[0]) / 1e3, 1),
                    "median_ms": round(ms, 2),
                    "overhead_ms": round(ms - median_ms(latencies["memory"], m), 2),
                    "x_raw_text": round(total / (m * 2 * TEXT_BYTES), 1),
                }
            )
            previous = (m, total)
        result["savers"][saver] = {"empty_table_bytes": empty[saver], "rows": rows}
    rows = {s: result["savers"][s]["rows"] for s in SAVERS}
    ratios = {
        f"storage server/stock at {turns}": sizes["server"][turns] / sizes["stock"][turns],
        f"latency server/stock at {turns}": rows["server"][-1]["median_ms"]
        / rows["stock"][-1]["median_ms"],
    }
    for s in SAVERS:
        ratios[f"latency growth {s} {turns}/10"] = (
            rows[s][-1]["median_ms"] / rows[s][0]["median_ms"]
        )
    result["ratios"] = {name: round(value, 3) for name, value in ratios.items()}
    return result


def print_table(result: dict[str, Any]) -> None:
    head = ("turns", "table MB", "KB/turn", "median ms", "overhead ms", "x raw text")
    print(
        f"{result['turns']} turns, {result['text_bytes_per_turn']} bytes of text per turn; "
        f"latency = median of the {WINDOW} turns ending at each mark\nKB/turn = growth since "
        "the previous mark; overhead = latency minus the in-memory saver's"
    )
    memory = ", ".join(f"turn {m}: {ms} ms" for m, ms in result["in_memory_ms"].items())
    print(f"in-memory baseline: {memory}")
    for saver, data in result["savers"].items():
        print(f"\n{saver} saver (empty tables {data['empty_table_bytes'] / 1e3:.0f} KB)")
        print("".join(f"{h:>12}" for h in head))
        for row in data["rows"]:
            print("".join(f"{v:>12}" for v in row.values()))
    print("\nratios")
    for name, value in result["ratios"].items():
        print(f"  {name:<40} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300, help="turns in the thread (>= 10)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="PostgreSQL server to use (default: $DATABASE_URL, else embedded)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.turns < 10:
        parser.error("--turns must be at least 10")
    result = asyncio.run(run(args.turns, args.database_url))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
