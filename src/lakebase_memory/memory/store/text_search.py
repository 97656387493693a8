"""Search by words, and by words and meaning together, over LangGraph's `store` table.

LangGraph's PostgresStore searches by meaning only (pgvector) and, without an embedding
model, ignores the query. This store answers a query in both cases:

- without embeddings, PostgreSQL full-text search: `store.search_text`, a generated
  `tsvector` of the item's key and every string in its value (English stemming), under a GIN
  index; any word of the query may match, and items are ranked by `ts_rank_cd` (of a query
  with more than RANKED_CANDIDATES matches, the most recently updated that many);
- with embeddings, hybrid: the vector candidates (LangGraph's nearest-neighbour query) and the
  full-text candidates are fused by reciprocal rank (`1/(60 + rank)` summed over both lists),
  so an exact word match counts even where the embedding misses it, and the reverse.

A search by meaning is a filtered HNSW scan (the user's namespace filters the index's rows),
so it runs with pgvector's iterative index scan (`IterativeScanMixin`).

The SQL is built here once and run by both the sync and the async store (LangGraph's own
split: I/O-free query building in the base class, drivers around it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

import orjson
from langgraph.store.base import SearchOp
from langgraph.store.postgres.base import (
    PLACEHOLDER,
    BasePostgresStore,
    PostgresIndexConfig,
    _namespace_prefix_condition,
    get_distance_operator,
)
from psycopg import AsyncCursor

TEXT_SEARCH_CONFIG = "english"
# The generated column's expression: the key's words and every string in the value.
SEARCH_TEXT_EXPRESSION = (
    f"to_tsvector('{TEXT_SEARCH_CONFIG}'::regconfig, translate(key, '_-.', '   ')) || "
    f"jsonb_to_tsvector('{TEXT_SEARCH_CONFIG}'::regconfig, value, '[\"string\"]')"
)
MAX_QUERY_WORDS = 32  # a longer query's later words add little and cost a bitmap each
# A search by words ranks at most this many matches (the newest; `_word_candidates`).
RANKED_CANDIDATES = 200
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al.): dampens the top ranks
_WORD = re.compile(r"\w+")

Query = tuple[str, list[Any]]


def tsquery_text(query: str) -> str:
    """`query` as to_tsquery input: its words, any of which may match. Only `\\w` runs are
    kept, so no user text reaches tsquery's own syntax."""
    return " | ".join(_WORD.findall(query)[:MAX_QUERY_WORDS])


# pgvector's HNSW scan yields `hnsw.ef_search` (40) candidates and stops: when a filter (the
# user's namespace) then removes most of them, as when the user's items are a tenth of the
# index, a search answers fewer than `limit` items. With pgvector 0.8's iterative scan the
# index goes on until the query has its LIMIT (or has visited `hnsw.max_scan_tuples`, 20,000
# by default); `relaxed_order` may yield candidates slightly out of order, and both search
# queries sort them again. Set for the search's own transaction (the store runs a batch in
# one pipeline or transaction), and only where pgvector has it: before 0.8 the setting does
# not exist, nothing is set, and a search of a small namespace can answer short.
ITERATIVE_SCAN = """
SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true) FROM pg_extension
WHERE extname = 'vector'
    AND string_to_array(split_part(extversion, '-', 1), '.')::int[] >= '{0,8}'"""


class IterativeScanMixin:
    """Runs a batch's searches by meaning with pgvector's iterative index scan. For the sync
    and the async store alike: `_batch_search_ops` is a coroutine on the async one."""

    def _batch_search_ops(
        self, search_ops: Sequence[tuple[int, SearchOp]], results: list[Any], cur: Any
    ) -> Any:
        parent = super()._batch_search_ops  # type: ignore[misc]
        store = cast(BasePostgresStore[Any], self)
        if not (store.index_config and any(op.query for _, op in search_ops)):
            return parent(search_ops, results, cur)
        if isinstance(cur, AsyncCursor):

            async def search() -> None:
                await cur.execute(ITERATIVE_SCAN)
                await parent(search_ops, results, cur)

            return search()
        cur.execute(ITERATIVE_SCAN)
        return parent(search_ops, results, cur)


class TextSearchMixin(IterativeScanMixin):
    """Overrides BasePostgresStore's query building for searches that have a query."""

    def _prepare_batch_search_queries(
        self, search_ops: Sequence[tuple[int, SearchOp]]
    ) -> tuple[list[Query], list[tuple[int, str]]]:
        store = cast(BasePostgresStore[Any], self)
        queries, embedding_requests = super()._prepare_batch_search_queries(search_ops)  # type: ignore[misc]
        embedding_requests = []
        for idx, (_, op) in enumerate(search_ops):
            if not op.query:
                continue  # LangGraph's listing query stands
            if store.index_config:
                queries[idx] = _hybrid_query(store, op)
                embedding_requests.append((idx, op.query))
            else:
                queries[idx] = _text_query(store, op)
        return queries, embedding_requests


def _scope(store: BasePostgresStore[Any], op: SearchOp, *, namespace: bool = True) -> Query:
    """The WHERE clause every search of `op` shares: namespace (unless `namespace` is
    False), filter, expiry."""
    clauses: list[str] = []
    params: list[Any] = []
    if op.namespace_prefix and namespace:
        condition, ns_params = _namespace_prefix_condition(op.namespace_prefix)
        clauses.append(condition)
        params.extend(ns_params)
    for key, value in (op.filter or {}).items():
        if isinstance(value, dict):
            for operator, operand in value.items():
                condition, filter_params = store._get_filter_condition(key, operator, operand)
                clauses.append(condition)
                params.extend(filter_params)
        else:
            clauses.append("value->%s = %s::jsonb")
            params.extend([key, orjson.dumps(value).decode()])
    if store._omit_expired:
        clauses.append("(store.expires_at IS NULL OR store.expires_at > now())")
    return " AND ".join(clauses) or "TRUE", params


def _text_query(store: BasePostgresStore[Any], op: SearchOp) -> Query:
    candidates, params = _word_candidates(store, op)
    sql = f"""
        SELECT c.prefix, c.key, c.value, c.created_at, c.updated_at,
               ts_rank_cd(c.search_text, to_tsquery('{TEXT_SEARCH_CONFIG}', %s), 32) AS score
        FROM ({candidates}) c
        ORDER BY score DESC, c.updated_at DESC
        LIMIT %s OFFSET %s"""
    words = tsquery_text(op.query or "")
    return _refreshing(op, sql), [words, *params, op.limit, op.offset]


def _word_candidates(store: BasePostgresStore[Any], op: SearchOp) -> Query:
    """The items a search by words ranks: every match while there are at most
    RANKED_CANDIDATES (or limit + offset), else the most recently updated that many.

    A word in most of a user's items matches tens of thousands of them, and ranking them all
    (ts_rank_cd per row, each read from the heap: GIN finds matches, never in rank order)
    took 142 ms at 100,000 items; the newest matches are found along the (prefix,
    updated_at) index in about 2 ms. A namespace is `prefix = p OR prefix LIKE 'p.%'`
    (LangGraph's condition): one arm each, so each can walk that index in order; for rare
    words the planner takes the GIN index instead, and the ranking is exact."""
    scope, scope_params = _scope(store, op, namespace=False)
    arms: list[Query] = [("TRUE", [])]
    if op.namespace_prefix:
        _, (path, descendants) = _namespace_prefix_condition(op.namespace_prefix)
        arms = [("store.prefix = %s", [path]), ("store.prefix LIKE %s ESCAPE '\\'", [descendants])]
    cap = max(RANKED_CANDIDATES, op.limit + op.offset)
    words = tsquery_text(op.query or "")
    selects, params = [], []
    for namespace, namespace_params in arms:
        selects.append(f"""(
            SELECT store.prefix, store.key, store.value, store.created_at, store.updated_at,
                   store.search_text
            FROM store
            WHERE store.search_text @@ to_tsquery('{TEXT_SEARCH_CONFIG}', %s)
                AND {namespace} AND {scope}
            ORDER BY store.updated_at DESC
            LIMIT %s)""")
        params += [words, *namespace_params, *scope_params, cap]
    return " UNION ALL ".join(selects), params


def _hybrid_query(store: BasePostgresStore[Any], op: SearchOp) -> Query:
    config = cast(PostgresIndexConfig, store.index_config)
    vector_type = config.get("ann_index_config", {}).get("vector_type", "vector")
    distance, _ = get_distance_operator(store)
    distance = distance % ("%s", vector_type)
    scope, params = _scope(store, op)
    word_candidates, word_params = _word_candidates(store, op)
    per_item = int(cast(dict[str, Any], config)["__estimated_num_vectors"])
    candidates = (op.limit + op.offset) * per_item * 2 + 1
    # The vector candidates' ORDER BY is the bare distance, ascending, with a LIMIT: the form
    # pgvector's HNSW index serves.
    sql = f"""
        WITH by_meaning AS (
            SELECT store.prefix, store.key, {distance} AS distance
            FROM store JOIN store_vectors sv ON store.prefix = sv.prefix AND store.key = sv.key
            WHERE {scope}
            ORDER BY {distance}
            LIMIT %s
        ), meaning_ranks AS (
            SELECT prefix, key, row_number() OVER (ORDER BY min(distance)) AS rank
            FROM by_meaning GROUP BY prefix, key
        ), word_ranks AS (
            SELECT c.prefix, c.key,
                   row_number() OVER (ORDER BY ts_rank_cd(
                       c.search_text, to_tsquery('{TEXT_SEARCH_CONFIG}', %s), 32) DESC,
                       c.updated_at DESC) AS rank
            FROM ({word_candidates}) c
            ORDER BY rank
            LIMIT %s
        ), fused AS (
            SELECT prefix, key, sum(1.0 / ({RRF_K} + rank)) AS score
            FROM (SELECT * FROM meaning_ranks UNION ALL SELECT * FROM word_ranks) ranks
            GROUP BY prefix, key
        )
        SELECT store.prefix, store.key, store.value, store.created_at, store.updated_at,
               fused.score
        FROM fused JOIN store ON store.prefix = fused.prefix AND store.key = fused.key
        ORDER BY fused.score DESC, store.updated_at DESC
        LIMIT %s OFFSET %s"""
    query_params = [
        PLACEHOLDER, *params, PLACEHOLDER, candidates,
        tsquery_text(op.query or ""), *word_params, candidates,
        op.limit, op.offset,
    ]  # fmt: skip
    return _refreshing(op, sql), query_params


def _refreshing(op: SearchOp, sql: str) -> str:
    """`sql`, also moving the found items' expiry on when the search refreshes TTLs."""
    if not op.refresh_ttl:
        return sql
    return f"""
        WITH found AS ({sql}),
        refreshed AS (
            UPDATE store s SET expires_at = now() + (s.ttl_minutes || ' minutes')::interval
            FROM found WHERE s.prefix = found.prefix AND s.key = found.key
                AND s.ttl_minutes IS NOT NULL
        )
        SELECT * FROM found"""
