"""Load on the whole server, as issue 12 asks: 50 streaming clients on distinct threads for 60 s
against one `start-app`, then against `start-app --workers 2` on one database, then the fence
across two processes. Every turn must succeed; the figures are printed (`pytest -s`) and kept
in test-artifacts/load.json. The speed targets are the benchmark's (`benchmarks/load.py`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import ARTIFACTS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import load

pytestmark = pytest.mark.slow
RACES = 10


def test_fifty_streaming_clients_for_a_minute_one_process_and_two(pg_admin: str) -> None:
    argv = ["--database-url", pg_admin, "--clients", "50", "--seconds", "60"]
    result = load.main([*argv, "--workers", "1,2", "--races", str(RACES)])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.json").write_text(json.dumps(result, indent=2))
    for run in result["runs"]:
        assert run["errors"] == {}, run["error_samples"]
        assert run["turns"] >= 50  # every client finished at least one turn
        assert run["seconds"] >= 60
        # Each process's pool holds at most its share (client backends: autovacuum's
        # workers also show under the database).
        pools = run["workers"] * run["pool_max_size"]
        assert run["peak_connections"] <= pools, run["connections_at_peak"]
    fencing = result["fencing"]
    assert fencing["outcomes"] == {load.FENCED: RACES}
    assert fencing["stored_wrong"] == []
