"""Searching the long-term memory store at a million items, and what a tool adds to a turn.

`--items` (1,000,000) memories of `--users` (10) users, interleaved, 100,000 for the user
searched: facts of templates and Zipf-distributed words ("my sister didosi lives in rome"),
by COPY; `--dims` (64) vectors summed in SQL from per-word vectors (`WordVectors`, which
embeds the queries too); then the schema's GIN and HNSW indexes, timed. On a pool made as the
server's, `--repeat` (50) times each, `store.asearch(user_namespace(user), query=...,
limit=5)` with 1 to 3 words, common (template words) and rare (names in 1 to 3 of the user's
facts): by words (the server's store), by meaning (LangGraph's vector query as its
`AsyncPostgresStore` runs it, and with this store's iterative scan), hybrid (the server's
store with embeddings); floor: a pooled `SELECT 1`, `store.aget`. Every answer is checked
(`limit` items unless fewer match, all the user's; by meaning, recall against an exact
search). `--big-dims` (1024, Databricks' default) is costed on `--big-items` (100,000) items
next to `--dims`. Last, turns of the server's graph (memory tools, echo model, linear saver)
with a tool call ("Remember that ...") and without, per durability mode.

Targets (issue 14): p50 under 5 ms for full-text and for vector search with an index; a tool
round trip adds no more than one checkpoint write per step.

    uv run python benchmarks/store_search.py [--items 1000000] [--dims 64] [--quick] [--json]
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Awaitable
from contextlib import suppress
from itertools import accumulate
from typing import Any

import psycopg
from langchain_core.embeddings import Embeddings
from langgraph.store.postgres import AsyncPostgresStore

from common import check, parser, print_table, rotated, run_cli, scratch_database, server_pool
from lakebase_memory.agent import build_graph
from lakebase_memory.agent.models.echo import EchoChatModel, memory_key_for
from lakebase_memory.agent.models.embeddings import EmbeddingModel
from lakebase_memory.agent.tools import MEMORY_TOOLS
from lakebase_memory.config import Settings
from lakebase_memory.memory.saver import AsyncLinearPostgresSaver
from lakebase_memory.memory.store import namespace_prefix, tsquery_text, user_namespace
from lakebase_memory.memory.store.text_search import IterativeScanMixin
from lakebase_memory.schema import ensure_schema
from lakebase_memory.server.runtime import open_store

LIMIT, TARGET_MS = 5, 5.0
_WORD, _SLOT = re.compile(r"\w+"), re.compile(r"\{(\w+)\}")


def made_up(seed: int, count: int) -> list[str]:
    """Names of three syllables: the long tail of rare words."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    return sorted({"".join(rng.choices(syllables, k=3)) for _ in range(count)})


_KINDS = """
colour: blue green red yellow purple orange black white grey pink teal brown
animal: cat dog rabbit parrot hamster horse tortoise goldfish ferret snake
job: nurse teacher engineer baker pilot lawyer farmer chef designer plumber
food: noodles pizza sushi curry tacos pasta dumplings salad soup cheese
relation: sister brother mother father cousin friend neighbour aunt uncle
sport: running swimming cycling climbing tennis football rowing skiing
day: monday tuesday wednesday thursday friday saturday sunday
language: spanish french german italian japanese portuguese dutch greek
city: london paris berlin madrid rome lisbon vienna prague dublin oslo"""
WORDS = {k: v.split() for k, v in (line.split(":") for line in _KINDS.strip().splitlines())}
WORDS["city"] += made_up(41, 400)
WORDS["name"] = made_up(14, 6000)
ZIPF = {"name": 0.5, "city": 0.5}  # the k-th word's weight is k ** -exponent (default 1)
TEMPLATES = (
    "my favourite colour is {colour} like the {animal} of my {relation} {name}",
    "I have a {animal} called {name} who loves {food}",
    "I work as a {job} in {city} with {name}",
    "{name} and I love {food} and {food} from {city}",
    "my {relation} {name} lives in {city}",
    "I go {sport} with {name} every {day}",
    "my {relation} {name} is allergic to {food}",
    "I am learning {language} with {name} before a trip to {city}",
)
SLOTS = 4  # at most, per template
COMMON = ("love", "favourite colour", "running every monday")
UNMATCHED = "crimson kitten"  # no fact holds these words: hybrid answers by meaning alone


class WordVectors(Embeddings):
    """HashEmbeddings' idea (similar wording scores high, meaning does not), but dense: a
    word is a pseudo-random unit vector seeded by its blake2b hash, a text the normalized sum
    of its words'. (HashEmbeddings' sparse vectors are at distance 1 from most others, which
    leaves an HNSW graph nothing to descend: its searches found no item sharing a word.)"""

    def __init__(self, dims: int) -> None:
        self.dims, self.cache = dims, {}

    def word(self, word: str) -> list[float]:
        if word not in self.cache:
            rng = random.Random(hashlib.blake2b(word.encode(), digest_size=8).digest())
            raw = [rng.gauss(0.0, 1.0) for _ in range(self.dims)]
            self.cache[word] = [v / math.sqrt(sum(v * v for v in raw)) for v in raw]
        return self.cache[word]

    def sum(self, words: list[str]) -> list[float]:
        return [sum(column) for column in zip(*(self.word(w) for w in words), strict=True)]

    def embed_query(self, text: str) -> list[float]:
        words = _WORD.findall(text.lower())
        total = self.sum(words) if words else [0.0] * self.dims
        norm = math.sqrt(sum(v * v for v in total)) or 1.0
        return [v / norm for v in total]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]


def user_of(n: int) -> str:
    return f"user{n}@example.com"


class Corpus:
    """Item i is user i % users's: its `store` COPY line (prefix, the key the echo model
    makes plus a number, value) and its `items` line (template and slot word numbers, from
    which SQL sums its vector). `words` counts user 0's facts holding each word."""

    def __init__(self, items: int, users: int, seed: int = 14) -> None:
        rng = random.Random(seed)
        self.vocabulary = ["", *sorted({w for ws in WORDS.values() for w in ws})]  # 0: none
        number = {w: n for n, w in enumerate(self.vocabulary)}
        weights = {k: list(accumulate((r + 1) ** -ZIPF.get(k, 1.0) for r in range(len(ws))))
                   for k, ws in WORDS.items()}  # fmt: skip
        slots = [_SLOT.findall(t) for t in TEMPLATES]
        formats = [_SLOT.sub("{}", t) for t in TEMPLATES]
        prefixes = [namespace_prefix(user_of(u)) for u in range(users)]
        self.words: Counter[str] = Counter()
        self.store: list[str] = []
        self.items: list[str] = []
        for i in range(items):
            t = rng.randrange(len(TEMPLATES))
            chosen = [rng.choices(WORDS[k], cum_weights=weights[k])[0] for k in slots[t]]
            fact = formats[t].format(*chosen)
            key = f"{prefixes[i % users]}\t{memory_key_for(fact)}_{i // users}"
            self.store.append(f"{key}\t{json.dumps({'fact': fact})}\n")
            ids = [number[w] for w in chosen] + [0] * (SLOTS - len(chosen))
            self.items.append(f"{key}\t{t}\t" + "\t".join(map(str, ids)) + "\n")
            if i % users == 0:
                self.words.update(set(_WORD.findall(fact.lower())))

    def rare(self, count: int) -> list[str]:
        """`count` made-up names in 1 to 3 of user 0's facts (any, on tiny corpora)."""
        names = set(WORDS["name"]) | set(WORDS["city"][10:])
        rare = sorted(w for w, n in self.words.items() if w in names and n <= 3)
        return (rare or sorted(names & set(self.words)))[:count]


# An item's vector: its template's fixed words (and "fact", the value's JSON key: LangGraph
# embeds the value's JSON text) plus its slot words, as WordVectors sums them.
VECTORS_SQL = """
CREATE TEMP TABLE bench_words (n int PRIMARY KEY, v vector({dims}));
CREATE TEMP TABLE bench_templates (n int PRIMARY KEY, v vector({dims}));
CREATE TEMP TABLE bench_items (prefix text, key text, t int, w1 int, w2 int, w3 int, w4 int);
"""
INSERT_VECTORS = """
INSERT INTO store_vectors (prefix, key, field_name, embedding)
SELECT i.prefix, i.key, '$', l2_normalize(t.v + a.v + b.v + c.v + d.v)
FROM bench_items i JOIN bench_templates t ON t.n = i.t
JOIN bench_words a ON a.n = i.w1 JOIN bench_words b ON b.n = i.w2
JOIN bench_words c ON c.n = i.w3 JOIN bench_words d ON d.n = i.w4"""
SEARCH_INDEXES = """SELECT indexname, indexdef FROM pg_indexes
WHERE indexname IN ('store_search_text_idx', 'store_prefix_updated_at_idx',
                    'store_vectors_embedding_idx')"""


async def copy_lines(cur: psycopg.AsyncCursor[Any], statement: str, lines: list[str]) -> None:
    async with cur.copy(statement) as copy:
        for k in range(0, len(lines), 10_000):
            await copy.write("".join(lines[k : k + 10_000]))


async def load(db: str, corpus: Corpus, dims: int, maintenance_mem: str) -> dict[str, float]:
    """Tables as the schema makes them, filled by COPY and INSERT ... SELECT, their search
    indexes dropped before and built after; seconds per step."""
    await ensure_schema(db, vector_dims=dims)
    seconds: dict[str, float] = {}
    vectors = WordVectors(dims)
    fixed = [["fact", *_WORD.findall(_SLOT.sub("", t).lower())] for t in TEMPLATES]
    as_text = [vectors.word(w) if w else [0.0] * dims for w in corpus.vocabulary]
    words = [f"{n}\t[{','.join(map(repr, v))}]\n" for n, v in enumerate(as_text)]
    templates = [f"{n}\t[{','.join(map(repr, vectors.sum(w)))}]\n" for n, w in enumerate(fixed)]
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        cur = conn.cursor()
        indexes = dict(await (await cur.execute(SEARCH_INDEXES)).fetchall())
        for name in indexes:
            await cur.execute(f"DROP INDEX {name}")
        start = time.perf_counter()
        await copy_lines(cur, "COPY store (prefix, key, value) FROM STDIN", corpus.store)
        seconds["copy store"] = time.perf_counter() - start
        start = time.perf_counter()
        await cur.execute(VECTORS_SQL.format(dims=dims))
        await copy_lines(cur, "COPY bench_words FROM STDIN", words)
        await copy_lines(cur, "COPY bench_templates FROM STDIN", templates)
        await copy_lines(cur, "COPY bench_items FROM STDIN", corpus.items)
        await cur.execute(INSERT_VECTORS)
        seconds["vectors"] = time.perf_counter() - start
        await cur.execute(f"SET maintenance_work_mem = '{maintenance_mem}'")
        for name, definition in sorted(indexes.items()):
            start = time.perf_counter()
            await cur.execute(definition)
            seconds[name] = time.perf_counter() - start
        start = time.perf_counter()
        await cur.execute("VACUUM ANALYZE store")
        await cur.execute("VACUUM ANALYZE store_vectors")
        seconds["vacuum analyze"] = time.perf_counter() - start
        with suppress(psycopg.errors.InsufficientPrivilege):  # the load's pages written now,
            await cur.execute("CHECKPOINT")  # not while searches are timed
    return seconds


class VectorOnlyStore(IterativeScanMixin, AsyncPostgresStore):
    """LangGraph's vector query, with the memory store's iterative-scan setting."""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000, 3)


def queries(corpus: Corpus) -> list[tuple[str, str]]:
    """(class, query): 1 to 3 words, common and rare, and words no fact holds."""
    rare = corpus.rare(6)
    chosen = [" ".join(r) for r in (rare[:1], rare[1:3], rare[3:6]) if r]
    unmatched = [("no word match", UNMATCHED)]
    return [("common", q) for q in COMMON] + [("rare", q) for q in chosen] + unmatched


async def timed(work: Awaitable[Any]) -> float:
    start = time.perf_counter()
    await work
    return time.perf_counter() - start


async def column(pool: Any, statement: str, params: Any = ()) -> list[Any]:
    async with pool.connection() as conn:
        return [row["v"] for row in await (await conn.execute(statement, params)).fetchall()]


COUNT_MATCHES = """SELECT count(*) AS v FROM store
WHERE prefix = %s AND search_text @@ to_tsquery('english', %s)"""
EXACT = """SELECT (embedding <=> %s::vector) + 0 AS v FROM store_vectors WHERE prefix = %s
ORDER BY 1 LIMIT %s"""  # `+ 0`: no index serves this order, every vector of the user is read


async def search_kinds(
    db: str, corpus: Corpus, dims: int, repeat: int, kinds: tuple[str, ...]
) -> dict[str, Any]:
    """Check, then time, each kind of search of user 0's namespace (a kind at a time: each
    in the steady state of the caches its own searches make)."""
    settings, vectors = Settings(_env_file=None), WordVectors(dims)  # type: ignore[call-arg]
    index: Any = {"dims": dims, "embed": vectors}
    ttl: Any = {"refresh_on_read": True, "omit_expired": True}  # the server's
    namespace, prefix = user_namespace(user_of(0)), namespace_prefix(user_of(0))
    answers: list[dict[str, Any]] = []
    async with server_pool(db, 2) as pool:
        every = {
            "text": lambda: open_store(pool, settings, None),
            "vector (LangGraph)": lambda: AsyncPostgresStore(pool, index=index, ttl=ttl),
            "vector": lambda: VectorOnlyStore(pool, index=index, ttl=ttl),
            "hybrid": lambda: open_store(pool, settings, EmbeddingModel(vectors, dims)),
        }
        stores = {kind: every[kind]() for kind in kinds}
        for kind, store in stores.items():
            mine = []
            for c, q in queries(corpus):
                items = await store.asearch(namespace, query=q, limit=LIMIT)
                foreign = sum(i.namespace != namespace for i in items)
                a = {"kind": kind, "class": c, "query": q, "items": len(items),
                     "expected": LIMIT, "foreign": foreign, "samples": []}  # fmt: skip
                if kind == "text":
                    count = await column(pool, COUNT_MATCHES, (prefix, tsquery_text(q)))
                    a["expected"] = min(LIMIT, count[0])
                if kind.startswith("vector"):
                    exact = await column(pool, EXACT, (vectors.embed_query(q), prefix, LIMIT))
                    found = [1 - (i.score or 0) for i in items]
                    a["recall"] = sum(d <= exact[-1] + 1e-6 for d in found) / len(exact)
                    a["distance_x_exact"] = round(sum(found) / max(sum(exact), 1e-9), 4)
                mine.append(a)
            for r in range(repeat):
                for a in rotated(mine, r):
                    search = store.asearch(namespace, query=a["query"], limit=LIMIT)
                    a["samples"].append(await timed(search))
            answers += mine
        key, any_store = corpus.store[0].split("\t")[1], next(iter(stores.values()))
        floor: dict[str, list[float]] = {"SELECT 1": [], "store.aget": []}
        for _ in range(max(repeat, 20)):
            floor["SELECT 1"].append(await timed(column(pool, "SELECT 1 AS v")))
            floor["store.aget"].append(await timed(any_store.aget(namespace, key)))
    by_class: dict[str, Any] = {}
    for a in answers:
        for group in (f"{a['kind']}, {a['class']}", f"{a['kind']}, all"):
            by_class.setdefault(group, {"samples": []})["samples"] += a["samples"]
    for a in [*answers, *by_class.values()]:
        times = a.pop("samples")
        a.update(p50_ms=pct(times, 0.5), p99_ms=pct(times, 0.99))
    floor_ms = {k: pct(v, 0.5) for k, v in floor.items()}
    return {"by_query": answers, "by_class": by_class, "floor_ms": floor_ms}


class CountingSaver(AsyncLinearPostgresSaver):
    """The server's saver, counting its checkpoint writes."""

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self.counts: Counter[str] = Counter()

    async def aput(self, *args: Any, **kwargs: Any) -> Any:
        self.counts["aput"] += 1
        return await super().aput(*args, **kwargs)

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        self.counts["aput_writes"] += 1
        await super().aput_writes(*args, **kwargs)


TABLES = ("checkpoints", "checkpoint_writes", "checkpoint_blobs", "checkpoint_messages")
ROWS = "SELECT array[" + ", ".join(f"(SELECT count(*) FROM {t} WHERE thread_id = %(t)s)" for t
    in (*TABLES[:3], "ai_chatbot.checkpoint_messages")) + "] AS v"  # fmt: skip
TURNS = {"without a tool": "Hello, this is message {}",
         "with a tool": "Remember that my lucky number is {}"}  # fmt: skip


def median_row(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {k: round(statistics.median(r.get(k, 0) for r in rows), 3) for k in rows[-1]}


async def tool_round_trip(admin: str, turns: int, modes: tuple[str, ...]) -> dict[str, Any]:
    """Medians per turn of the server's graph, with and without a tool call: steps, saver
    calls, rows added, latency (the echo model answers at once: the rest is the turn's)."""
    result: dict[str, Any] = {"modes": {}}
    async with scratch_database(admin, None) as db, server_pool(db, 2) as pool:
        await ensure_schema(db)
        saver = CountingSaver(pool)
        store = open_store(pool, Settings(_env_file=None), None)  # type: ignore[call-arg]
        graph = build_graph(EchoChatModel(), "Be brief.", saver, tools=MEMORY_TOOLS, store=store)
        for mode in modes:
            per: dict[str, list[dict[str, Any]]] = {label: [] for label in TURNS}
            for turn in range(turns):
                for label, text in TURNS.items():
                    thread = f"{mode}-{label}"
                    config: Any = {"configurable": {"thread_id": thread, "user_id": "u"}}
                    message = {"messages": [("user", text.format(turn))]}
                    (before,) = await column(pool, ROWS, {"t": thread})
                    saver.counts.clear()
                    start = time.perf_counter()
                    stream = graph.astream(message, config, durability=mode, stream_mode="updates")  # type: ignore[arg-type]
                    steps = len([update async for update in stream])
                    ms = (time.perf_counter() - start) * 1000
                    (after,) = await column(pool, ROWS, {"t": thread})
                    rows = {
                        f"rows {t}": n - b for t, n, b in zip(TABLES, after, before, strict=True)
                    }
                    per[label].append({"steps": steps, **saver.counts, **rows, "turn ms": ms})
            result["modes"][mode] = {
                label: median_row(rows[1:] or rows) for label, rows in per.items()
            }
        puts = [await timed(store.aput(user_namespace("u"), f"k{n}", {"fact": f"number {n}"}))
                for n in range(max(5, turns))]  # fmt: skip
        result["store.aput ms"] = pct(puts, 0.5)
    return result


async def vector_cost(admin: str, items: int, users: int, dims: tuple[int, ...], repeat: int,
                      memory: str) -> dict[str, Any]:  # fmt: skip
    """The HNSW index's build time and its searches' latency at each of `dims`, same items."""
    corpus, result = Corpus(items, users), {}
    for d in dims:
        async with scratch_database(admin, None) as db:
            seconds = await load(db, corpus, d, memory)
            searched = await search_kinds(db, corpus, d, repeat, ("vector",))
        result[str(d)] = {"hnsw_build_s": round(seconds["store_vectors_embedding_idx"], 2),
                          **searched["by_class"]["vector, all"]}  # fmt: skip
    return result


async def measure(admin: str, *, items: int = 1_000_000, users: int = 10, dims: int = 64,
                  repeat: int = 50, big_dims: int = 1024, big_items: int = 100_000,
                  turns: int = 5, maintenance_mem: str = "1GB") -> dict[str, Any]:  # fmt: skip
    start = time.perf_counter()
    corpus = Corpus(items, users)
    seconds = {"generate facts": time.perf_counter() - start}
    async with scratch_database(admin, None) as db:
        seconds |= await load(db, corpus, dims, maintenance_mem)
        kinds = ("text", "vector (LangGraph)", "vector", "hybrid")
        searched = await search_kinds(db, corpus, dims, repeat, kinds)
    sizes = (admin, big_items, users, (dims, big_dims), max(5, repeat // 5), maintenance_mem)
    big = await vector_cost(*sizes) if big_dims else {}
    tools = await tool_round_trip(admin, turns, ("exit", "async"))
    return {"benchmark": "store_search", "items": items, "users": users, "dims": dims,
            "user_items": len(range(0, items, users)), "maintenance_work_mem": maintenance_mem,
            "seconds": {k: round(v, 2) for k, v in seconds.items()}, **searched,
            "big_items": big_items, "vector_dims_cost": big, "tool_round_trip": tools,
            "checks": targets(searched, tools)}  # fmt: skip


def targets(searched: dict[str, Any], tools: dict[str, Any]) -> list[dict[str, Any]]:
    p50 = {k: v["p50_ms"] for k, v in searched["by_class"].items()}
    floor, answers = searched["floor_ms"], searched["by_query"]
    base = f"floor: SELECT 1 {floor['SELECT 1']:.2f} ms, store.aget {floor['store.aget']:.2f} ms"
    ours = [a for a in answers if a["kind"] != "vector (LangGraph)"]
    short = sum(a["items"] < LIMIT for a in answers if a["kind"] == "vector (LangGraph)")
    vector = [a for a in answers if a["kind"] == "vector"]
    recall = statistics.mean(a["recall"] for a in vector)
    ratio = statistics.mean(a["distance_x_exact"] for a in vector)
    result = [check(f"full-text search p50, {c} words", mode="-", value=p50[f"text, {c}"],
                    target=TARGET_MS, op="<=", unit=" ms",
                    note=f"{p50[f'text, {c}'] / floor['store.aget']:.1f}x store.aget; {base}")
              for c in ("common", "rare")]  # fmt: skip
    result.append(check(
        "vector search p50, HNSW with iterative scan", mode="-", value=p50["vector, all"],
        target=TARGET_MS, op="<=", unit=" ms", stock=p50["vector (LangGraph), all"],
        note=f"stock: LangGraph's query, no iterative scan, {short} of {len(vector)} answers "
        f"short; recall@{LIMIT} {recall:.2f}, distance x exact {ratio:.3f}; {base}"))  # fmt: skip
    wrong = sum(a["items"] != a["expected"] or a["foreign"] > 0 for a in ours)
    note = f"of {len(ours)}: text, vector, hybrid"
    result.append(check("answers short or with others' items", mode="-", value=wrong, target=0,
                        op="<=", unit="", note=note))  # fmt: skip
    for mode, t in tools["modes"].items():
        tool, plain = t["with a tool"], t["without a tool"]
        writes = sum(tool.get(k, 0) - plain.get(k, 0) for k in ("aput", "aput_writes"))
        result.append(check(
            "tool turn: checkpoint writes (aput, aput_writes) per step it adds", mode=mode,
            value=writes / max(1, tool["steps"] - plain["steps"]), target=1, op="<=", unit="",
            note=f"{tool['turn ms'] - plain['turn ms']:.2f} ms more per turn, of which the "
            f"tool's store.aput {tools['store.aput ms']:.2f} ms"))  # fmt: skip
    return result


def report(result: dict[str, Any]) -> None:
    print(f"== store search: {result['items']:,} items of {result['users']} users "
          f"({result['user_items']:,} for the user searched), {result['dims']} dims, "
          f"limit {LIMIT}; seconds per step ==")  # fmt: skip
    print_table(("step", "seconds"), result["seconds"].items())
    print(f"  (indexes built with maintenance_work_mem = {result['maintenance_work_mem']})\n")
    keys = ("kind", "class", "query", "items", "expected", "foreign", "recall", "p50_ms", "p99_ms")
    print_table(keys, ([a.get(k) for k in keys] for a in result["by_query"]))
    rows = ((k, v["p50_ms"], v["p99_ms"]) for k, v in result["by_class"].items())
    print()
    print_table(("kind, class", "p50_ms", "p99_ms"), rows)
    print("  floor: " + ", ".join(f"{k} {v:.3f} ms" for k, v in result["floor_ms"].items()))
    if result["vector_dims_cost"]:
        print(f"\nvector dimensions on {result['big_items']:,} items (all queries)")
        rows = ((d, *v.values()) for d, v in result["vector_dims_cost"].items())
        print_table(("dims", "HNSW build s", "vector p50 ms", "vector p99 ms"), rows)
    print("\nturns of the server's graph (echo model, memory tools, linear saver), medians")
    for mode, turns in result["tool_round_trip"]["modes"].items():
        keys = tuple(turns["with a tool"])
        print(f" durability={mode}")
        print_table(("turn", *keys), ((n, *(r.get(k, 0) for k in keys)) for n, r in turns.items()))
    print("\ntargets (stock = LangGraph's AsyncPostgresStore on the same tables)")
    rows = ((c["name"], c["mode"], c["value"], c["stock"], c["target"], c["passed"])
            for c in result["checks"])  # fmt: skip
    print_table(("target", "durability", "value", "stock", "target", "result"), rows)
    for c in result["checks"]:
        print(f"  note, {c['name']} ({c['mode']}): {c['note']}")


QUICK = {"items": 2000, "users": 10, "dims": 16, "repeat": 2, "big_dims": 32, "big_items": 500,
         "turns": 2}  # fmt: skip
OPTIONS = {"items": "memories in all", "users": "users they belong to", "dims": "vector "
           "dimensions", "repeat": "timed runs of each search", "big_dims": "dimensions to "
           "cost (0: skip)", "big_items": "items for --big-dims", "turns": "turns per kind "
           "and durability mode"}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__)
    defaults = measure.__kwdefaults__
    for name, text in OPTIONS.items():
        cli.add_argument(f"--{name.replace('_', '-')}", type=int, default=defaults[name], help=text)
    cli.add_argument("--maintenance-work-mem", default="1GB", help="for the index builds")
    cli.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    args = cli.parse_args(argv)
    if args.users < 1 or args.items < 10 * args.users or min(args.repeat, args.turns) < 1:
        cli.error("need --users >= 1, --items >= 10 x --users, --repeat and --turns >= 1")
    sizes = dict(QUICK) if args.quick else {name: getattr(args, name) for name in OPTIONS}
    return run_cli(args, measure, report, maintenance_mem=args.maintenance_work_mem, **sizes)


if __name__ == "__main__":
    main()
