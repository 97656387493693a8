"""`start-app --workers N` and several apps on one database: one port, N processes, one memory.

Each request here opens a new connection, as separate users do, so the kernel hands it to any
of the processes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from app_process import App, postmaster
from conftest import answer_text
from lakebase_memory.config import Settings
from lakebase_memory.database.sizing import MAINTENANCE_CONNECTIONS, ServerFacts
from lakebase_memory.errors import ConfigurationError


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, model_backend="echo", **values)  # type: ignore[call-arg]


def test_each_pool_is_its_share_of_the_connection_limit() -> None:
    facts = ServerFacts("18.1", max_connections=100, reserved=3)
    assert facts.connection_budget(settings()) == 100 - 3 - MAINTENANCE_CONNECTIONS
    assert facts.pool_size(settings(app_workers=4)) == 10  # DB_POOL_MAX_SIZE is smaller
    assert facts.pool_size(settings(app_workers=16)) == 94 // 16
    assert facts.pool_size(settings(app_workers=3, db_max_connections=6)) == 2
    lakebase = ServerFacts("16.9", max_connections=1000, reserved=3)
    assert lakebase.pool_size(settings(app_workers=8, db_pool_max_size=200)) == 994 // 8
    with pytest.raises(ConfigurationError) as refused:
        facts.pool_size(settings(app_workers=3, db_max_connections=2))
    assert "3 server processes need at least 3 database connections" in str(refused.value)
    assert "the app may use 2" in str(refused.value)


def info(url: str) -> dict:
    response = httpx.get(f"{url}/agent/info", timeout=10)  # a new connection each time
    assert response.status_code == 200, response.text
    return response.json()


def answering_pids(url: str, attempts: int = 200) -> set[int]:
    return {info(url)["process"]["pid"] for _ in range(attempts)}


def turn(url: str, thread_id: str, text: str, **body: object) -> httpx.Response:
    request = {"input": text, "custom_inputs": {"thread_id": thread_id}, **body}
    return httpx.post(f"{url}/invocations", json=request, timeout=30)


def stored_user_messages(url: str, thread_id: str) -> list[str]:
    thread = httpx.get(f"{url}/api/threads/{thread_id}", timeout=10).json()
    return [m["content"] for m in thread["messages"] if m["role"] == "user"]


@pytest.mark.slow
def test_two_workers_on_the_embedded_database(scratch_dir: Path) -> None:
    data = scratch_dir / "data"
    app = App(scratch_dir, data, "--workers", "2").wait_ready()
    try:
        assert any("2 worker processes, up to 10 database connections each" in line
                   for line in app.output)  # fmt: skip
        pids = answering_pids(app.url)
        assert len(pids) == 2, pids  # both processes take connections
        assert app.process.pid not in pids  # the parent only supervises

        for number in range(1, 9):  # one thread, its turns answered by either process
            reply = turn(app.url, "shared", f"message {number}")
            assert reply.status_code == 200, reply.text
            assert f"You have sent {number} message" in answer_text(reply.json())
        assert stored_user_messages(app.url, "shared") == [f"message {n}" for n in range(1, 9)]

        victim = sorted(pids)[0]
        psutil.Process(victim).kill()
        deadline = time.monotonic() + 60
        while True:  # the other process serves meanwhile; a replacement joins it
            now = answering_pids(app.url, attempts=40)
            if len(now) == 2 and victim not in now:
                break
            assert victim not in now
            assert time.monotonic() < deadline, app.logs()
            time.sleep(0.5)
        assert "You have sent 9 messages" in answer_text(turn(app.url, "shared", "after").json())
        database = postmaster(data)
        assert database is not None and database.is_running()
    finally:
        code = app.interrupt()
    assert code == 0, app.logs()
    assert "lakebase-memory stopped" in app.logs()
    assert postmaster(data) is None  # the parent stopped the embedded database
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def connections_to(admin: str, dbname: str) -> int:
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = %s AND backend_type = 'client backend'",
            (dbname,),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.slow
def test_workers_never_hold_more_than_their_share(
    scratch_dir: Path, pg_admin: str, database: str
) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(database)["dbname"]
    app = App(scratch_dir, scratch_dir / "unused", "--workers", "3",
              DATABASE_URL=database, DB_MAX_CONNECTIONS="6", DB_POOL_MIN_SIZE="1",
              ECHO_DELAY_SECONDS="0.01")  # fmt: skip
    app.wait_ready()
    try:
        assert any("3 worker processes, up to 2 database connections each" in line
                   for line in app.output)  # fmt: skip
        process = info(app.url)["process"]
        assert (process["workers"], process["pool_max_size"]) == (3, 2)
        peak = 0
        failures: list[str] = []

        def client(number: int) -> None:
            for step in range(4):
                reply = turn(app.url, f"load-{number}", f"turn {step}", stream=True)
                if reply.status_code != 200 or "response.completed" not in reply.text:
                    failures.append(f"{reply.status_code} {reply.text[:200]}")

        clients = [threading.Thread(target=client, args=(n,)) for n in range(24)]
        for thread in clients:
            thread.start()
        while any(thread.is_alive() for thread in clients):
            peak = max(peak, connections_to(pg_admin, dbname))
            time.sleep(0.05)
        assert failures == []
        assert 3 <= peak <= 6, peak  # every process connected; none beyond its share
    finally:
        assert app.interrupt() == 0


@pytest.mark.slow
def test_too_many_workers_for_the_connection_limit_are_refused(
    scratch_dir: Path, database: str
) -> None:
    app = App(scratch_dir, scratch_dir / "unused", "--workers", "3",
              DATABASE_URL=database, DB_MAX_CONNECTIONS="2")  # fmt: skip
    assert app.process.wait(timeout=60) == 1
    logs = app.logs()
    assert "3 server processes need at least 3 database connections" in logs
    assert "Start fewer workers, raise DB_MAX_CONNECTIONS" in logs
    assert "Traceback" not in logs


@pytest.mark.slow
def test_the_local_model_is_not_started_once_per_worker(scratch_dir: Path) -> None:
    app = App(scratch_dir, scratch_dir / "data", "--workers", "2", MODEL_BACKEND="local")
    assert app.process.wait(timeout=60) == 1
    logs = app.logs()
    assert "--workers is for the echo, openai and databricks back-ends" in logs
    assert "Traceback" not in logs
    assert postmaster(scratch_dir / "data") is None  # refused before anything started


def race(apps: list[App], thread_id: str) -> list[httpx.Response]:
    """The same thread's turn sent to each app at the same moment."""
    replies: dict[int, httpx.Response] = {}
    start = threading.Barrier(len(apps))

    def send(index: int) -> None:
        start.wait()
        replies[index] = turn(apps[index].url, thread_id, f"from app {index}")

    senders = [threading.Thread(target=send, args=(i,)) for i in range(len(apps))]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    return [replies[i] for i in range(len(apps))]


@pytest.mark.slow
def test_one_thread_is_answered_by_one_process_at_a_time(scratch_dir: Path, database: str) -> None:
    """Two apps on one database: the lease is in the database, so it fences across processes."""
    apps = [
        App(scratch_dir, scratch_dir / "unused", DATABASE_URL=database, ECHO_DELAY_SECONDS="0.1")
        for _ in range(2)
    ]
    try:
        for app in apps:
            app.wait_ready()
        for attempt in range(3):
            thread_id = f"fenced-{attempt}"
            replies = race(apps, thread_id)
            codes = sorted(reply.status_code for reply in replies)
            assert codes == [200, 409], [reply.text for reply in replies]
            busy = next(reply for reply in replies if reply.status_code == 409).json()
            assert busy["error"]["code"] == "thread_busy"
            won = next(i for i, reply in enumerate(replies) if reply.status_code == 200)
            for app in apps:  # either process reads the one answer the other wrote
                assert stored_user_messages(app.url, thread_id) == [f"from app {won}"]
    finally:
        for app in apps:
            assert app.interrupt() == 0
