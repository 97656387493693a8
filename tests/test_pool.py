"""One pool per process: bounded connections, reused across requests, healing after drops."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg

from conftest import answer_text, make_settings, say
from lakebase_memory.database.pool import APPLICATION_NAME

SESSIONS = (
    "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()"
)


def app_sessions(database: str) -> list[int]:
    with psycopg.connect(database) as conn:
        return [row[0] for row in conn.execute(SESSIONS, (APPLICATION_NAME,))]


def test_many_requests_share_one_bounded_pool(database: str, serve) -> None:
    server = serve(make_settings(database, db_pool_max_size=4))
    pool = server.app.state.runtime.pool
    with server.client() as client:
        with ThreadPoolExecutor(max_workers=12) as workers:
            replies = list(workers.map(lambda i: say(client, f"hello {i}", f"t{i}"), range(36)))
        assert all("You have sent 1 message" in answer_text(r) for r in replies)
        assert server.app.state.runtime.pool is pool  # never a pool per request
        assert 1 <= len(app_sessions(database)) <= 4
        assert pool.get_stats()["connections_num"] <= 4


def test_connections_dropped_by_the_server_are_replaced(database: str, serve) -> None:
    server = serve(make_settings(database))
    with server.client() as client:
        say(client, "before", "drop")
        with psycopg.connect(database, autocommit=True) as admin:
            for pid in app_sessions(database):
                # Wait (up to 5 s) until the session is gone: a drop that has happened, not
                # one racing the next request, which no checkout check can see coming.
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        # The pool checks a connection before lending it and reconnects: no failed request.
        assert "You have sent 2" in answer_text(say(client, "after", "drop"))
        assert client.get("/health").json() == {"status": "healthy"}


def test_the_pool_has_a_maximum_lifetime(database: str, serve) -> None:
    server = serve(make_settings(database, db_pool_max_lifetime=600))
    pool = server.app.state.runtime.pool
    assert pool.max_lifetime == 600
    assert pool.name == "lakebase-memory"
