"""The local model as a user meets it: `uv run start-app` to a first answer, then a long
conversation whose messages (~350 words each) cross the model's 4096-token window many times.

Prints, for a machine where the model's engine is already built:

- start-up: seconds from `uv run start-app` (a fresh embedded database, the model process
  started and checked) to the socket accepting, and to the first answer;
- per turn: latency and tokens sent to the model (`custom_outputs.context.tokens_sent`),
  and whether the window moved at that turn (a summary written, the prompt evaluated anew);
- ratios against turn 2 measured in the same run: turn N (the last), the slowest turn, the
  median of the turns that did not move the window, the median of those that did, and the
  mean over the last six turns (one cycle of moves), with the target: turn N within 1.5x of
  turn 2.

The client waits `--pause` seconds (10) between an answer and its next message, as a user
reads the answer and writes the next one: that is when the app prepares the window's next
move (the summary, and the model's reading of the new prompt's start). With `--pause 0` the
next message waits for that work, and the turns that move the window show its cost.

    uv run python benchmarks/local_model.py [--turns 40] [--answer-tokens 48] [--pause 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORDS = [
    "garden", "river", "window", "morning", "table", "letter", "bridge", "forest", "candle",
    "music", "winter", "ocean", "market", "journey", "lantern", "meadow", "harbor", "village",
    "mountain", "quiet", "evening",
]  # fmt: skip
FACT = "My name is Zelda Quint and my locker code is 4471."
TARGET = 1.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def message(turn: int, rng: random.Random) -> str:
    opening = FACT if turn == 1 else "Here is more of my diary."
    return f"{opening} {' '.join(rng.choice(WORDS) for _ in range(340))}. What do you think?"


def start_app(port: int, data_dir: Path, answer_tokens: int) -> tuple[subprocess.Popen, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    env.update(
        MODEL_BACKEND="local",
        MAX_OUTPUT_TOKENS=str(answer_tokens),
        MODEL_CONTEXT_TOKENS="4096",
        LAKEBASE_MEMORY_DATA_DIR=str(data_dir),
    )
    uv = os.environ.get("UV") or shutil.which("uv") or "uv"
    started = time.perf_counter()
    process = subprocess.Popen(
        [uv, "run", "--project", str(ROOT), "start-app", "--port", str(port)],
        cwd=data_dir.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if "is ready at" in line:
            return process, time.perf_counter() - started
        if process.poll() is not None:
            break
    raise SystemExit(f"start-app did not start (exit {process.wait()})")


def measure(turns: int, answer_tokens: int, pause: float) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="lakebase-memory-bench-"))
    port = free_port()
    launched = time.perf_counter()
    process, ready = start_app(port, scratch / "data", answer_tokens)
    rng = random.Random(11)
    rows: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            for turn in range(1, turns + 1):
                if turn > 1:
                    time.sleep(pause)
                body = {"input": message(turn, rng), "custom_inputs": {"thread_id": "bench"}}
                began = time.perf_counter()
                response = client.post("/invocations", json=body)
                took = time.perf_counter() - began
                response.raise_for_status()
                if turn == 1:
                    first_answer = time.perf_counter() - launched
                context = response.json()["custom_outputs"]["context"]
                moved = bool(rows) and context["messages_left_out"] != rows[-1]["left_out"]
                rows.append({"turn": turn, "seconds": took, "tokens_sent": context["tokens_sent"],
                             "left_out": context["messages_left_out"], "moved": moved})  # fmt: skip
            facts = client.get("/api/threads/bench").json()["context"]["facts"]
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(60)
        shutil.rmtree(scratch, ignore_errors=True)
    base = rows[1]["seconds"] if len(rows) > 1 else rows[0]["seconds"]
    steady = [r["seconds"] for r in rows[2:] if not r["moved"]] or [base]
    moves = [r["seconds"] for r in rows if r["moved"]] or [0.0]
    last_cycle = [r["seconds"] for r in rows[-6:]]
    return {
        "startup": {"ready_seconds": ready, "first_answer_seconds": first_answer},
        "turns": rows,
        "ratios": {
            "last_turn": rows[-1]["seconds"] / base,
            "worst_turn": max(r["seconds"] for r in rows[1:]) / base if len(rows) > 1 else 1.0,
            "steady_median": statistics.median(steady) / base,
            "move_median": statistics.median(moves) / base,
            "last_six_mean": statistics.mean(last_cycle) / base,
        },
        "turn_2_seconds": base,
        "first_fact_kept": FACT in facts,
        "target": TARGET,
        "pause_seconds": pause,
    }


def report(result: dict[str, Any]) -> None:
    s = result["startup"]
    print(f"start-app to ready: {s['ready_seconds']:.1f} s; "
          f"to the first answer: {s['first_answer_seconds']:.1f} s")  # fmt: skip
    print(f"{'turn':>4} {'seconds':>8} {'tokens sent':>12} {'left out':>9}  moved")
    for r in result["turns"]:
        print(f"{r['turn']:>4} {r['seconds']:>8.2f} {r['tokens_sent']:>12} {r['left_out']:>9}"
              f"  {'yes' if r['moved'] else ''}")  # fmt: skip
    ratios = result["ratios"]
    print(f"\nagainst turn 2 ({result['turn_2_seconds']:.2f} s), "
          f"{result['pause_seconds']:g} s between an answer and the next message:")  # fmt: skip
    for name, value in ratios.items():
        print(f"  {name:<14} {value:5.2f}x")
    verdict = "PASS" if ratios["last_turn"] <= result["target"] else "FAIL"
    print(f"target: last turn <= {result['target']}x turn 2: {verdict} "
          f"({ratios['last_turn']:.2f}x); first turn's fact in the summary: "
          f"{result['first_fact_kept']}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--answer-tokens", type=int, default=48)
    parser.add_argument("--pause", type=float, default=10.0,
                        help="seconds between an answer and the next message")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = measure(args.turns, args.answer_tokens, args.pause)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        report(result)


if __name__ == "__main__":
    main()
