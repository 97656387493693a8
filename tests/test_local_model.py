"""The offline default model: llama.cpp in a process of its own, supervised by the app.

Native code never loads in the test process: the model runs in the app's model process, so a
crash there fails one test with its signal instead of ending the run. The session installs
the model's engine the way a checkout's first `start-app` does, when it is missing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import (
    DIARY_WORDS,
    ROOT,
    LiveServer,
    answer_text,
    free_port,
    make_settings,
    say,
    sse_events,
)
from lakebase_memory.agent.models.local import local_model_file
from lakebase_memory.agent.models.local_install import install_local_engine, local_engine_installed
from lakebase_memory.agent.models.local_process import LocalModelProcess
from lakebase_memory.errors import ConfigurationError, ModelUnavailableError

# The first test may install the engine (compiling llama.cpp takes ~4 minutes on 2 cores), and
# pytest-timeout counts fixture set-up as part of the test.
pytestmark = [pytest.mark.local_model, pytest.mark.slow, pytest.mark.timeout(1200)]
FACT = "My name is Zelda Quint and my locker code is 4471."


@pytest.fixture(scope="session")
def local_engine() -> None:
    if not local_engine_installed():
        install_local_engine(lambda line: print(line, flush=True))
    assert local_engine_installed()


def local_settings(database: str, **overrides: object):
    values: dict[str, object] = {"model_backend": "local", "max_output_tokens": 48}
    values.update(overrides)
    return make_settings(database, **values)


@pytest.fixture
def local_server(
    local_engine: None, database: str, serve: Callable[..., LiveServer]
) -> Iterator[LiveServer]:
    yield serve(local_settings(database))


def model_process(server: LiveServer) -> LocalModelProcess:
    return server.app.state.runtime.model.process


def deltas_of(events: list) -> list[str]:
    return [
        e["delta"]
        for e in events
        if isinstance(e, dict) and e["type"] == "response.output_text.delta"
    ]


def test_a_two_turn_conversation_and_a_streamed_answer(local_server: LiveServer) -> None:
    with httpx.Client(base_url=local_server.url, timeout=120) as client:
        info = client.get("/agent/info").json()
        first = answer_text(say(client, "What is the capital of France?", "local-1"))
        second = answer_text(say(client, "And of Italy?", "local-1"))
        streamed = client.post(
            "/invocations", json={"input": "Count from one to five.", "stream": True}
        )
        messages = client.get("/api/threads/local-1").json()["messages"]
    assert info["model_backend"] == "local" and info["model"] == "llama-cpp"
    assert first.strip() and second.strip()
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "What is the capital of France?"),
        ("assistant", first),
        ("user", "And of Italy?"),
        ("assistant", second),
    ]
    events = sse_events(streamed)
    assert events[-1] == "[DONE]"
    assert isinstance(events[-2], dict) and events[-2]["type"] == "response.completed"
    assert len(deltas_of(events)) > 1 and "".join(deltas_of(events)).strip()
    # The model is another process; this one never loaded llama.cpp.
    assert model_process(local_server).pid != os.getpid()
    assert "llama_cpp" not in sys.modules


def test_a_model_killed_mid_answer_costs_one_503_and_nothing_else(
    local_engine: None, database: str, serve: Callable[..., LiveServer]
) -> None:
    server = serve(local_settings(database, max_output_tokens=256))
    process = model_process(server)
    story = "Write a long story about a dragon who learns to bake bread."
    with httpx.Client(base_url=server.url, timeout=180) as client:
        say(client, "Hello.", "other")  # a thread of its own, before the crash
        first_pid = process.pid
        # 1. A streamed answer: killed once its first words arrived.
        frames: list[str] = []
        with client.stream(
            "POST", "/invocations",
            json={"input": story, "stream": True, "custom_inputs": {"thread_id": "crash"}},
        ) as response:  # fmt: skip
            assert response.status_code == 200
            lines = response.iter_lines()
            for line in lines:
                frames.append(line)
                if "response.output_text.delta" in line:
                    os.kill(first_pid, signal.SIGKILL)
                    break
            frames.extend(lines)
        # Meanwhile the rest of the app answers: the UI, the threads API.
        assert client.get("/").status_code == 200
        assert client.get("/api/threads").status_code == 200
        error = next(f for f in frames if '"type": "error"' in f)
        assert '"code": "model_unavailable"' in error and "SIGKILL" in error
        # Nothing half-written: the question is kept, no partial answer.
        kept = client.get("/api/threads/crash").json()["messages"]
        assert [m["role"] for m in kept] == ["user"]

        # 2. Another thread's turn, sent right away, waits for the restart and is answered.
        other = say(client, "Are you back?", "other")
        assert answer_text(other).strip()
        assert process.pid not in (None, first_pid) and process.starts == 2

        # 3. A plain answer killed while it is being written: HTTP 503 with what happened.
        started = time.monotonic()
        say(client, story, "timing")
        took = time.monotonic() - started
        assert took > 0.8, f"the answer took {took:.2f} s: too short to kill in the middle"
        outcome: dict[str, httpx.Response] = {}

        def ask() -> None:
            outcome["plain"] = client.post(
                "/invocations", json={"input": story, "custom_inputs": {"thread_id": "plain"}}
            )

        model = server.app.state.runtime.model
        begun = model.answers_begun
        asking = threading.Thread(target=ask)
        asking.start()
        deadline = time.monotonic() + 60
        while model.answers_begun == begun and time.monotonic() < deadline:
            time.sleep(0.01)  # until its first words are out: a kill before them is retried
        time.sleep(min(0.3, took / 4))
        os.kill(process.pid or 0, signal.SIGKILL)
        asking.join(60)
        plain = outcome["plain"]
        assert plain.status_code == 503, plain.text
        assert plain.json()["error"]["code"] == "model_unavailable"
        assert "SIGKILL" in plain.json()["error"]["message"]

        # 4. The next turn on the crashed threads works: the kept question is answered once.
        retried = say(client, story, "crash")
        messages = client.get("/api/threads/crash").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == answer_text(retried)


def conversation_message(turn: int, rng: random.Random) -> str:
    words = " ".join(rng.choice(DIARY_WORDS) for _ in range(340))
    opening = FACT if turn == 1 else f"Here is more of my diary, part {['one', 'two'][turn % 2]}."
    return f"{opening} {words}. What do you think?"


def test_forty_turns_of_350_words_cross_the_window_and_keep_the_first_fact(
    local_server: LiveServer,
) -> None:
    rng = random.Random(11)
    contexts = []
    with httpx.Client(base_url=local_server.url, timeout=300) as client:
        for turn in range(1, 41):
            reply = say(client, conversation_message(turn, rng), "forty")
            assert answer_text(reply).strip(), f"turn {turn} got an empty answer"
            contexts.append(reply["custom_outputs"]["context"])
        thread = client.get("/api/threads/forty").json()
    assert len(thread["messages"]) == 80  # the whole conversation is kept
    moves = sorted({c["messages_left_out"] for c in contexts} - {0})
    assert len(moves) >= 3, moves  # 4096 tokens crossed several times
    assert all(c["tokens_sent"] <= 4096 - 48 for c in contexts)
    assert contexts[-1]["summarized"] is True
    # The first turn's fact reaches the model through the summary.
    assert FACT in thread["context"]["facts"]


# --- start-up failures: one line with the fix ---------------------------------------------


async def test_a_model_that_crashes_at_start_says_how_to_rebuild(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    with pytest.raises(ModelUnavailableError) as caught:
        await LocalModelProcess.start(tmp_path / "m.gguf", context_tokens=512, threads=1,
                                      command=crash)  # fmt: skip
    message = str(caught.value)
    assert "crashed (SIGSEGV) while loading the model" in message
    assert "uv cache clean llama-cpp-python" in message and "MODEL_BACKEND=" in message


async def test_a_model_that_exits_at_start_shows_what_it_said(tmp_path: Path) -> None:
    failing = [sys.executable, "-c", "import sys; print('error: not a GGUF file'); sys.exit(3)"]
    with pytest.raises(ModelUnavailableError) as caught:
        await LocalModelProcess.start(tmp_path / "m.gguf", context_tokens=512, threads=1,
                                      command=failing)  # fmt: skip
    assert "exited with status 3 while loading the model (error: not a GGUF file)" in str(
        caught.value
    )


async def test_a_model_that_never_answers_times_out(tmp_path: Path) -> None:
    silent = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(ModelUnavailableError, match="did not start within 1 s"):
        await LocalModelProcess.start(tmp_path / "m.gguf", context_tokens=512, threads=1,
                                      command=silent, start_timeout=1.0)  # fmt: skip


def test_a_missing_model_file_is_a_configuration_error(local_engine: None, tmp_path: Path):
    missing = tmp_path / "nope.gguf"
    settings = make_settings("postgresql://unused", model_backend="local",
                             local_model_path=str(missing))  # fmt: skip
    with pytest.raises(ConfigurationError, match="LOCAL_MODEL_PATH") as caught:
        local_model_file(settings)
    assert str(missing) in str(caught.value)


def test_start_app_stops_with_one_line_when_the_model_cannot_load(
    local_engine: None, database: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PG", "DATABASE_URL", "MODEL_", "LOCAL_MODEL"))}  # fmt: skip
    env.update(MODEL_BACKEND="local", DATABASE_URL=database, LOCAL_MODEL_PATH=str(broken))
    command = ["uv", "run", "--no-sync", "--project", str(ROOT), "start-app"]
    result = subprocess.run(
        [*command, "--port", str(free_port())], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=180, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert "The local model's process exited with status" in errors[0]
    assert "while loading the model" in errors[0] and "MODEL_BACKEND=" in errors[0]
    assert "is ready at http" not in output
    assert not [line for line in output.splitlines() if line.startswith("Traceback")], output


def test_the_local_model_benchmark_runs(local_engine: None) -> None:
    script = ROOT / "benchmarks" / "local_model.py"
    result = subprocess.run(
        [sys.executable, str(script), "--turns", "3", "--answer-tokens", "8", "--pause", "0",
         "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    import json

    figures = json.loads(result.stdout)
    assert [r["turn"] for r in figures["turns"]] == [1, 2, 3]
    assert all(r["tokens_sent"] > 0 for r in figures["turns"])
    assert figures["startup"]["first_answer_seconds"] >= figures["startup"]["ready_seconds"] > 0
    assert set(figures["ratios"]) == {
        "last_turn",
        "worst_turn",
        "steady_median",
        "move_median",
        "last_six_mean",
    }
