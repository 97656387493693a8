"""`start-app` as a user runs it: a real process on the embedded database, restarts, kills."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from app_process import START_APP, App, postmaster
from conftest import answer_text, free_port, say

pytestmark = pytest.mark.slow


def test_start_talk_stop_restart(scratch_dir: Path) -> None:
    data = scratch_dir / "data"
    app = App(scratch_dir, data).wait_ready()
    assert any("memory database: embedded PostgreSQL 18" in line and str(data) in line
               for line in app.output)  # fmt: skip
    with app.client() as client:
        say(client, "I live in Lisbon.", "trip")
        assert 'the first was: "I live in Lisbon."' in answer_text(say(client, "Where?", "trip"))
    assert app.interrupt() == 0
    assert postmaster(data) is None  # Ctrl-C stopped the embedded database too

    again = App(scratch_dir, data).wait_ready()
    with again.client() as client:
        reply = say(client, "Remind me?", "trip")
    assert "You have sent 3 messages" in answer_text(reply)
    assert 'the first was: "I live in Lisbon."' in answer_text(reply)
    assert again.interrupt() == 0


def test_killed_runs_do_not_block_the_next_start(scratch_dir: Path) -> None:
    data = scratch_dir / "data"
    app = App(scratch_dir, data).wait_ready()
    with app.client() as client:
        say(client, "before the crash", "crash")
    app.kill()  # kill -9: the database survives it and is reused
    server = postmaster(data)
    assert server is not None and server.is_running()

    reused = App(scratch_dir, data).wait_ready()
    with reused.client() as client:
        assert "You have sent 2" in answer_text(say(client, "after", "crash"))
    reused.kill()
    server = postmaster(data)
    assert server is not None
    server.kill()  # now the database dies too, leaving its pid file behind
    server.wait(10)
    assert (data / "pgdata" / "postmaster.pid").exists()

    recovered = App(scratch_dir, data).wait_ready()
    with recovered.client() as client:
        assert "You have sent 3" in answer_text(say(client, "recovered", "crash"))
    assert recovered.interrupt() == 0


def test_a_stale_pid_now_used_by_another_process(scratch_dir: Path) -> None:
    data = scratch_dir / "data"
    first = App(scratch_dir, data).wait_ready()
    first.interrupt()
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = data / "pgdata" / "postmaster.pid"
        pgdata = data / "pgdata"
        lines = [str(unrelated.pid), str(pgdata), "1700000000", "5432", str(pgdata), "", "0 0"]
        pid_file.write_text("\n".join([*lines, "ready", ""]))
        app = App(scratch_dir, data).wait_ready()
        assert unrelated.poll() is None  # the unrelated process was left alone
        assert app.interrupt() == 0
    finally:
        unrelated.kill()


def test_a_second_start_app_shares_the_database(scratch_dir: Path) -> None:
    data = scratch_dir / "data"
    one = App(scratch_dir, data).wait_ready()
    two = App(scratch_dir, data).wait_ready()
    with one.client() as a, two.client() as b:
        say(a, "written by one", "shared")
        assert 'the first was: "written by one"' in answer_text(say(b, "read by two", "shared"))
    assert one.interrupt() == 0
    with two.client() as b:  # the database outlives the first app while the second uses it
        assert "You have sent 3" in answer_text(say(b, "still here", "shared"))
    assert two.interrupt() == 0
    assert postmaster(data) is None


def test_on_databricks_apps_without_a_database_it_refuses_to_start(scratch_dir: Path) -> None:
    app = App(scratch_dir, scratch_dir / "data", DATABRICKS_APP_NAME="my-app")
    assert app.process.wait(timeout=60) != 0
    logs = app.logs()
    assert "LAKEBASE_INSTANCE_NAME environment variable is required but not set." in logs
    assert "  LAKEBASE_INSTANCE_NAME=<your-lakebase-instance-name>" in logs
    assert not (scratch_dir / "data").exists()


def test_a_start_up_failure_is_one_clear_line(scratch_dir: Path) -> None:
    app = App(scratch_dir, scratch_dir / "data", DATABASE_URL="postgresql://nobody@127.0.0.1:1/x")
    assert app.process.wait(timeout=60) == 1
    logs = app.logs()
    assert "error: The memory database is not available: connection failed" in logs
    assert "Traceback" not in logs and "is ready at" not in logs


def test_on_databricks_apps_it_binds_the_app_port_on_all_interfaces(
    scratch_dir: Path, database: str
) -> None:
    port = free_port()
    app = App(scratch_dir, scratch_dir / "data", port=port, DATABRICKS_APP_NAME="my-app",
              DATABRICKS_APP_PORT=str(port), DATABASE_URL=database).wait_ready()  # fmt: skip
    listening = [c.laddr for c in psutil.Process(app.process.pid).net_connections()
                 if c.status == psutil.CONN_LISTEN]  # fmt: skip
    assert [(a.ip, a.port) for a in listening] == [("0.0.0.0", port)]
    with app.client() as client:
        assert client.get("/health").json() == {"status": "healthy"}
    assert app.interrupt() == 0


def test_a_port_in_use_stops_start_app_and_its_database(scratch_dir: Path) -> None:
    import socket

    data = scratch_dir / "data"
    foreign = ("DATABASE_", "PG", "DATABRICKS_", "LAKEBASE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(foreign)}
    env.update(MODEL_BACKEND="echo", LAKEBASE_MEMORY_DATA_DIR=str(data))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(START_APP), "--port", str(port)], cwd=scratch_dir, env=env,
                                capture_output=True, text=True, timeout=90)  # fmt: skip
    assert result.returncode != 0
    assert "address already in use" in (result.stdout + result.stderr).lower()
    assert postmaster(data) is None  # the embedded database it started was stopped again


def test_killed_mid_answer_leaves_no_half_turn_and_the_retry_answers_once(
    scratch_dir: Path,
) -> None:
    """SIGKILL of the app during a streamed answer: after a restart the thread holds only
    whole turns, it is free again within TURN_LEASE_SECONDS, and the client's retry of the
    same message is answered once."""
    data = scratch_dir / "data"
    env = {"ECHO_DELAY_SECONDS": "0.05", "TURN_LEASE_SECONDS": "4"}
    app = App(scratch_dir, data, **env).wait_ready()
    with app.client() as client:
        say(client, "the first message", "killed")
        body = {"input": "the second message", "stream": True,
                "custom_inputs": {"thread_id": "killed"}}  # fmt: skip
        with client.stream("POST", "/invocations", json=body) as stream:
            for line in stream.iter_lines():
                if "response.output_text.delta" in line:
                    app.kill()  # mid-answer: a word has gone out, the rest has not
                    break
    restarted = App(scratch_dir, data, **env).wait_ready()
    try:
        with restarted.client() as client:
            messages = client.get("/api/threads/killed").json()["messages"]
            assert [m["content"] for m in messages][:1] == ["the first message"]
            assert len(messages) in (2, 3)  # whole turns; at most the unanswered message
            began = time.monotonic()
            while True:  # as a client retries: 409 until the dead turn's lease ends
                retry = client.post("/invocations", json={**body, "stream": False})
                if retry.status_code != 409:
                    break
                assert retry.json()["error"]["code"] == "thread_busy"
                assert time.monotonic() - began < 4 + 2
                time.sleep(0.25)
            assert retry.status_code == 200, retry.text
            messages = client.get("/api/threads/killed").json()["messages"]
        users = [m["content"] for m in messages if m["role"] == "user"]
        assert users == ["the first message", "the second message"]
        assert [m["role"] for m in messages] == ["user", "assistant"] * 2
        assert "the second message" in answer_text(retry.json())
    finally:
        assert restarted.interrupt() == 0
