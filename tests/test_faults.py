"""Faults under load: the database restarted and killed while 8 clients send turns.

A PostgreSQL of the test's own (so that it can be stopped and killed) serves a live server;
8 clients, each on its own thread, send turns without pause and retry a message until it is
answered, as a client should on a 503. Afterwards every thread holds each of its client's
messages exactly once, in order; every failure meanwhile was a 503 naming the database; and
the server answered again soon after the database was back, without a restart.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from conftest import LiveServer, make_settings
from lakebase_memory.agent.models.echo import EchoChatModel
from lakebase_memory.database.embedded import EmbeddedPostgres
from saver_fixtures import CHECKPOINT_TABLES

pytestmark = pytest.mark.slow
CLIENTS = 8
RECOVERY_SECONDS = 5.0
OUTAGE_SECONDS = 5.0


@pytest.fixture
def own_postgres(scratch_dir: Path) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A PostgreSQL of this test's own, and its conninfo."""
    server = EmbeddedPostgres(scratch_dir / "data")
    conninfo = server.start()
    yield server, conninfo
    server.stop()


def postmaster_pid(server: EmbeddedPostgres) -> int:
    return int((server.pgdata / "postmaster.pid").read_text().split()[0])


def kill_postmaster(server: EmbeddedPostgres) -> None:
    """SIGKILL the postmaster, then wait for its backends to notice and go."""
    pid = postmaster_pid(server)
    children = psutil.Process(pid).children()
    os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(pid), *children], timeout=30)


def start_again(server: EmbeddedPostgres) -> None:
    assert server.ensure_running() is not None  # crash recovery after a kill


@dataclass
class Client:
    """Sends turns on its thread until stopped; retries a message until it is stored."""

    server: LiveServer
    thread_id: str
    acknowledged: list[str] = field(default_factory=list)
    failures: list[tuple[float, int, str, str]] = field(default_factory=list)
    slowest_failure: float = 0.0
    answered_at: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        number = 0
        with self.server.client(timeout=30) as http:
            while not self.stop.is_set():
                text = f"{self.thread_id} message {number}"
                body = {"input": text, "custom_inputs": {"thread_id": self.thread_id}}
                began = time.monotonic()
                try:
                    response = http.post("/invocations", json=body)
                except httpx.HTTPError as error:  # a hang past the timeout, a reset
                    self.failures.append((time.monotonic(), 0, type(error).__name__, ""))
                    continue
                code = response.json().get("error", {}).get("code", "") if response.content else ""
                if response.status_code == 200 or code == "nothing_new":
                    # nothing_new: an earlier try was stored, its answer lost on the way.
                    self.acknowledged.append(text)
                    self.answered_at.append(time.monotonic())
                    number += 1
                else:
                    self.slowest_failure = max(self.slowest_failure, time.monotonic() - began)
                    self.failures.append(
                        (time.monotonic(), response.status_code, code, response.text[:300])
                    )
                    time.sleep(0.05)


def run_clients(server: LiveServer) -> tuple[list[Client], list[threading.Thread]]:
    clients = [Client(server, f"load-{i}") for i in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    return clients, threads


def first_answer_after(clients: list[Client], moment: float) -> float:
    times = [t for c in clients for t in c.answered_at if t > moment]
    assert times, "no turn was answered after the database came back"
    return min(times) - moment


def test_the_database_restarted_and_killed_under_load(
    own_postgres: tuple[EmbeddedPostgres, str], serve: Callable[..., LiveServer]
) -> None:
    database, conninfo = own_postgres
    server = serve(make_settings(conninfo, db_pool_timeout=3.0))
    clients, threads = run_clients(server)
    time.sleep(3)

    # Each outage outlasts the pool's timeout (3 s): the turns meanwhile fail, not just wait.
    database._pg_ctl("stop", "-m", "fast", "-w")  # a restart, as an operator does it
    time.sleep(OUTAGE_SECONDS)
    start_again(database)
    back_after_restart = time.monotonic()
    time.sleep(6)

    kill_postmaster(database)  # a crash
    time.sleep(OUTAGE_SECONDS)
    start_again(database)
    back_after_crash = time.monotonic()
    time.sleep(6)

    stop_clients(clients, threads)
    assert_failures_were_clear(clients)
    # Served again within seconds of each return, without a restart of the server.
    assert first_answer_after(clients, back_after_restart) < RECOVERY_SECONDS
    assert first_answer_after(clients, back_after_crash) < RECOVERY_SECONDS
    assert_every_acknowledged_turn_stored_once(server, clients)


def test_the_embedded_database_killed_under_load_is_started_again(
    scratch_dir: Path, serve: Callable[..., LiveServer]
) -> None:
    """The default target: the app notices its PostgreSQL is gone and starts it again."""
    settings = make_settings(None, lakebase_memory_data_dir=scratch_dir / "data")
    server = serve(settings)
    runtime = server.app.state.runtime
    assert runtime.watch is not None
    clients, threads = run_clients(server)
    time.sleep(3)
    kill_postmaster(runtime.target.embedded)
    killed = time.monotonic()
    time.sleep(8)
    stop_clients(clients, threads)
    assert runtime.watch.restarts == 1
    assert_failures_were_clear(clients, allow_none=True)
    assert first_answer_after(clients, killed) < RECOVERY_SECONDS + 3  # noticed, then started
    assert_every_acknowledged_turn_stored_once(server, clients)


def stop_clients(clients: list[Client], threads: list[threading.Thread]) -> None:
    for client in clients:
        client.stop.set()
    for thread in threads:
        thread.join(timeout=60)


def assert_failures_were_clear(clients: list[Client], allow_none: bool = False) -> None:
    """Every failure was a clear 503 naming the database: no 500, no hang, no traceback."""
    failures = [f for c in clients for f in c.failures]
    assert failures or allow_none, "the outages were not noticed"
    for _, status, code, text in failures:
        assert (status, code) == (503, "database_unavailable"), (status, code, text)
        assert "database" in text and "Traceback" not in text
    # Each failed within the pool's timeout and one diagnosing login (3 s + 3 s), not a hang.
    assert max(c.slowest_failure for c in clients) < 8.0


def assert_every_acknowledged_turn_stored_once(server: LiveServer, clients: list[Client]) -> None:
    """Every acknowledged turn is in its thread exactly once, in order, with its answer."""
    with server.client() as http:
        for client in clients:
            assert len(client.acknowledged) > 10
            thread = http.get(f"/api/threads/{client.thread_id}").json()
            users = [m["content"] for m in thread["messages"] if m["role"] == "user"]
            assert users == client.acknowledged
            roles = [m["role"] for m in thread["messages"]]
            assert roles == ["user", "assistant"] * len(client.acknowledged)


# -- deleted while writing, erased while listing -------------------------------------------


def rows_left(database: str, thread_ids: list[str], chat_ids: list[str]) -> dict[str, int]:
    """Rows of these threads in every table the project creates (by SQL)."""
    by_thread = [*CHECKPOINT_TABLES, 'ai_chatbot."Chat"']
    counts: dict[str, int] = {}
    with psycopg.connect(database) as conn:
        for table in by_thread:
            column = '"threadId"' if table.endswith('"Chat"') else "thread_id"
            query = f"SELECT count(*) FROM {table} WHERE {column} = ANY(%s)"
            counts[table] = conn.execute(query, (thread_ids,)).fetchone()[0]
        for table in ('ai_chatbot."Message"', 'ai_chatbot."Vote"'):
            query = f'SELECT count(*) FROM {table} WHERE "chatId"::text = ANY(%s)'
            counts[table] = conn.execute(query, (chat_ids,)).fetchone()[0]
    return counts


def test_erased_while_answering_and_listing_nothing_comes_back(
    database: str, serve: Callable[..., LiveServer]
) -> None:
    settings = make_settings(database, trust_forwarded_identity=True)
    server = serve(settings, model=EchoChatModel(delay_seconds=0.1))
    ada = {"X-Forwarded-Email": "ada@example.com"}
    ids = [f"ada-{n}" for n in range(12)]
    with server.client(headers=ada) as client:
        for thread_id in ids:
            client.post(
                "/invocations", json={"input": "hi", "custom_inputs": {"thread_id": thread_id}}
            )
        answer = client.get(f"/api/threads/{ids[0]}").json()["messages"][1]["id"]
        client.put(f"/api/threads/{ids[0]}/messages/{answer}/vote", json={"up": True})
    with psycopg.connect(database) as conn:
        chat_of = dict(conn.execute(
            'SELECT "threadId", id::text FROM ai_chatbot."Chat" WHERE "threadId" = ANY(%s)',
            (ids,)).fetchall())  # fmt: skip
    chats = list(chat_of.values())
    assert len(chats) == len(ids) and rows_left(database, ids, chats)['ai_chatbot."Vote"'] == 1

    stop = threading.Event()
    outcomes: dict[str, list[int]] = {"turns": [], "pages": []}

    def answering() -> None:  # turns on the old threads, each ~3 s of streaming
        with server.client(headers=ada, timeout=60) as http:
            for thread_id in ids[:4]:
                body = {"input": "more", "custom_inputs": {"thread_id": thread_id}}
                outcomes["turns"].append(http.post("/invocations", json=body).status_code)

    def listing() -> None:  # pages through the list again and again
        with server.client(headers=ada) as http:
            while not stop.is_set():
                cursor = None
                while True:
                    params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
                    page = http.get("/api/threads", params=params)
                    outcomes["pages"].append(page.status_code)
                    cursor = page.json().get("next_cursor") if page.status_code == 200 else None
                    if not cursor:
                        break

    workers = [threading.Thread(target=answering), threading.Thread(target=listing)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # a turn is streaming, the list is being paged
    with server.client(headers=ada) as client:
        erased = client.delete("/api/threads", params={"confirm": "all"})
    assert erased.status_code == 200, erased.text
    workers[0].join(timeout=60)
    stop.set()
    workers[1].join(timeout=60)

    # The turn running at the erasure was discarded; the ones after it started new threads.
    assert outcomes["turns"][0] == 409, outcomes
    assert set(outcomes["pages"]) == {200}
    assert len(outcomes["turns"]) == 4
    # Of what was erased, nothing came back in any table; the turns after the erasure made
    # new threads (one turn each), which is all that is left.
    after = [t for t in ids[:4] if outcomes["turns"][ids.index(t)] == 200]
    erased_only = [t for t in ids if t not in after]
    # (A chat's id derives from its thread id: a new thread of the same id has the same.)
    erased_chats = [chat_of[t] for t in erased_only]
    assert rows_left(database, erased_only, erased_chats) == dict.fromkeys(
        [*CHECKPOINT_TABLES, 'ai_chatbot."Chat"', 'ai_chatbot."Message"', 'ai_chatbot."Vote"'], 0
    )
    with server.client(headers=ada) as client:
        for thread_id in after:
            messages = client.get(f"/api/threads/{thread_id}").json()["messages"]
            assert [m["content"] for m in messages][:1] == ["more"] and len(messages) == 2
