"""LangGraph's upstream conformance suite (`langgraph-checkpoint-conformance`), base and extended
capabilities, against both linear savers on the real embedded PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from lakebase_memory.memory.saver import AsyncLinearPostgresSaver, LinearPostgresSaver

POOL_KWARGS = {"autocommit": True}


async def run_suite(saver: BaseCheckpointSaver, name: str) -> None:
    @checkpointer_test(name=name)
    async def factory() -> AsyncIterator[BaseCheckpointSaver]:
        yield saver

    report = await validate(factory, progress=ProgressCallbacks.verbose())
    report.print_report()
    failures = {cap: r.failures for cap, r in report.results.items() if r.failures}
    assert not failures, failures
    # Every capability, extended ones included, was detected and passed.
    assert {cap for cap, r in report.results.items() if r.passed} == {
        c.value for c in ALL_CAPABILITIES
    }
    assert report.conformance_level() == "FULL"


async def test_async_saver_conformance(database: str) -> None:
    async with AsyncConnectionPool(database, kwargs=POOL_KWARGS, open=False) as pool:
        saver = AsyncLinearPostgresSaver(pool)
        await saver.setup()
        await run_suite(saver, "AsyncLinearPostgresSaver")


async def test_sync_saver_conformance(database: str) -> None:
    with ConnectionPool(database, kwargs=POOL_KWARGS, open=True) as pool:
        saver = LinearPostgresSaver(pool)
        saver.setup()
        await run_suite(saver, "LinearPostgresSaver")


@pytest.mark.parametrize("cache_threads", [0])
async def test_async_saver_conformance_without_cache(database: str, cache_threads: int) -> None:
    """Every read and write goes to the database: the cache only ever saves work."""
    async with AsyncLinearPostgresSaver.from_conn_string(database) as saver:
        await saver.setup()
        saver.cache.max_threads = cache_threads
        await run_suite(saver, "AsyncLinearPostgresSaver (one connection, no cache)")
