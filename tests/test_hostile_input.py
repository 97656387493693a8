"""Hostile input against a live server: security headers on every answer, path traversal on
the UI's files, hostile thread ids and titles, deeply nested JSON, secrets that must never
reach an error body, and one user reaching for another's thread through every endpoint."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest

from conftest import LiveServer, make_settings, say
from lakebase_memory.server.headers import API_CONTENT_SECURITY_POLICY
from lakebase_memory.ui import CONTENT_SECURITY_POLICY


def raw_get(server: LiveServer, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET `path` exactly as written (httpx would resolve dot segments before sending)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def assert_security_headers(headers: httpx.Headers | dict[str, str], policy: str) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["x-content-type-options"] == "nosniff"
    assert lowered["x-frame-options"] == "SAMEORIGIN"
    assert lowered["referrer-policy"] == "same-origin"
    assert lowered["content-security-policy"] == policy
    assert "frame-ancestors" in policy


JSON = {"content-type": "application/json"}


# -- security headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/static/app.js", "/static/style.css", "/static/no-such-file.js"]
)
def test_every_ui_answer_has_the_security_headers(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (200, 404)
    assert_security_headers(response.headers, CONTENT_SECURITY_POLICY)


def test_every_api_answer_has_the_security_headers(client: httpx.Client) -> None:
    answers = [
        client.get("/api/threads"),
        client.get("/health"),
        client.get("/api/threads/nobody-s-thread"),  # 404
        client.get("/no/such/route"),  # 404 from the router
        client.post("/invocations", content=b"{not json", headers=JSON),
        client.post("/invocations", content=b"x" * 2_000_000),  # 413 from the size limit
        client.post("/invocations", json={"input": "hello"}),
    ]  # fmt: skip
    assert [a.status_code for a in answers] == [200, 200, 404, 404, 400, 413, 200]
    for answer in answers:
        assert_security_headers(answer.headers, API_CONTENT_SECURITY_POLICY)


def test_a_stream_has_the_security_headers(client: httpx.Client) -> None:
    with client.stream("POST", "/invocations", json={"input": "hi", "stream": True}) as answer:
        assert answer.status_code == 200
        assert_security_headers(answer.headers, API_CONTENT_SECURITY_POLICY)


# -- path traversal -----------------------------------------------------------------------

# Files the UI's folder must never lead to: the package's code, the project, the system.
SECRETS = (b"def create_app", b"The web chat UI", b"[project]", b"root:x:0:0")


@pytest.mark.parametrize(
    "path",
    [
        "/static/../__init__.py",
        "/static/../../server/app.py",
        "/static/../../../../pyproject.toml",
        "/static/%2e%2e/__init__.py",
        "/static/%2e%2e%2f%2e%2e%2fserver%2fapp.py",
        "/static/..%2f..%2fserver/app.py",
        "/static/%252e%252e%252f__init__.py",
        "/static/..%5c__init__.py",
        "/static/vendor/../../__init__.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/....//....//etc/passwd",
        "/static/%c0%ae%c0%ae/__init__.py",
        "/static/app.js%00.html",
        "/../../../../etc/passwd",
    ],
)
def test_the_ui_s_files_never_lead_outside_their_folder(server: LiveServer, path: str) -> None:
    status, headers, body = raw_get(server, path)
    assert status in (400, 404), (status, body[:200])
    assert not any(secret in body for secret in SECRETS)
    if status == 404 and path.startswith("/static/"):
        assert_security_headers(headers, CONTENT_SECURITY_POLICY)


# -- hostile thread ids, titles and bodies ------------------------------------------------

HOSTILE_IDS = [
    "'; DROP TABLE checkpoints; --",
    "robert'); DELETE FROM ai_chatbot.\"Chat\" WHERE (''='",
    "% _ \\ $1 ?",
    "thread/with/slashes/../and/dots",
    "ünïcødé-🧠-中文-עברית-\u202e-rtl",
    "e\u0301\u0301\u0301 combining",
    " spaced  out ",
    "x" * 512,
]


@pytest.mark.parametrize("thread_id", HOSTILE_IDS)
def test_hostile_thread_ids_are_stored_verbatim(client: httpx.Client, thread_id: str) -> None:
    answer = say(client, "remember me", thread_id)
    assert answer["custom_outputs"]["thread_id"] == thread_id
    path = "/api/threads/" + quote(thread_id, safe="")
    thread = client.get(path)
    assert thread.status_code == 200, thread.text
    assert thread.json()["id"] == thread_id
    assert thread.json()["messages"][0]["content"] == "remember me"
    listed = [t["id"] for t in client.get("/api/threads").json()["threads"]]
    assert thread_id in listed
    # The tables are all still there.
    assert client.get("/health").json()["status"] == "healthy"


@pytest.mark.parametrize(
    ("thread_id", "code"),
    [("a\x00b", "invalid_thread_id"), ("x" * 10_000, "invalid_thread_id")],
)
def test_impossible_thread_ids_are_422_and_store_nothing(
    client: httpx.Client, thread_id: str, code: str
) -> None:
    body = {"input": "hello", "custom_inputs": {"thread_id": thread_id}}
    for stream in (False, True):
        answer = client.post("/invocations", json={**body, "stream": stream})
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == code
    assert client.get("/api/threads").json()["threads"] == []


@pytest.mark.parametrize(
    ("title", "status", "stored"),
    [
        ("'; DROP TABLE checkpoints; --", 200, "'; DROP TABLE checkpoints; --"),
        ("ünïcødé 🧠 中文 \u202e", 200, "ünïcødé 🧠 中文 \u202e"),
        ("  many   spaces\tand\nlines ", 200, "many spaces and lines"),
        ("a\x00b", 422, None),
        ("t" * 10_000, 422, None),
        ("   ", 422, None),
    ],
)
def test_hostile_titles(client: httpx.Client, title: str, status: int, stored: str | None) -> None:
    say(client, "hello", "titled")
    before = client.get("/api/threads/titled").json()["title"]
    answer = client.patch("/api/threads/titled", json={"title": title})
    assert answer.status_code == status, answer.text
    after = client.get("/api/threads/titled").json()["title"]
    if stored is None:
        assert "error" in answer.json() and answer.json()["error"]["code"].startswith("invalid_")
        assert after == before
    else:
        assert answer.json()["title"] == stored == after


@pytest.mark.parametrize(
    ("depth", "where", "status"),
    [
        (100, "input", 422),  # parsed, then refused by the request's schema
        (10_000, "input", 400),  # too deep for the parser
        (10_000, "custom_inputs", 400),
        (100_000, "custom_inputs", 400),
    ],
)
def test_deeply_nested_json_is_refused_cleanly(
    client: httpx.Client, depth: int, where: str, status: int
) -> None:
    nested = "[" * depth + "]" * depth
    document = (
        f'{{"input": {nested}}}' if where == "input"
        else f'{{"input": "hi", "custom_inputs": {{"thread_id": "deep", "x": {nested}}}}}'
    )  # fmt: skip
    answer = client.post("/invocations", content=document, headers=JSON)
    assert answer.status_code == status, answer.text[:300]
    assert answer.json()["error"]["code"] == "invalid_request"
    if status == 400:
        assert "nested too deeply" in answer.json()["error"]["message"]
    assert client.get("/api/threads").json()["threads"] == []


# -- no secrets in error bodies -----------------------------------------------------------

PASSWORD = "s3cret-Pa55word"


def test_no_error_body_holds_the_password_or_the_connection_string(
    database: str, serve: Callable[..., LiveServer], pg_admin: str
) -> None:
    """The database is taken away under a running server whose URL carries a password."""
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE hostile_app LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    url = psycopg.conninfo.make_conninfo(database, user="hostile_app", password=PASSWORD)
    server = serve(make_settings(url))
    with server.client() as client:
        assert say(client, "hello", "kept")["custom_outputs"]["thread_id"] == "kept"
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute("ALTER ROLE hostile_app NOLOGIN")
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE usename = 'hostile_app'")  # fmt: skip
        try:
            answers = [
                client.post("/invocations", json={"input": "again",
                                                  "custom_inputs": {"thread_id": "kept"}}),
                client.get("/api/threads"),
                client.get("/api/threads/kept"),
                client.get("/health"),
                client.delete("/api/threads/kept"),
            ]  # fmt: skip
            # Refused before its stream starts: a JSON error like the others.
            answers.append(client.post("/invocations", json={"input": "x", "stream": True}))
        finally:
            with psycopg.connect(pg_admin, autocommit=True) as admin:
                admin.execute("ALTER ROLE hostile_app LOGIN")
    assert all(a.status_code == 503 for a in answers), [a.text for a in answers]
    for answer in answers:
        assert PASSWORD not in answer.text and url not in answer.text
        assert "password=" not in answer.text and "postgresql://" not in answer.text
        assert ".s.PGSQL" not in answer.text  # libpq's socket path
        assert "Traceback" not in answer.text
        assert answer.json()["error"]["code"] == "database_unavailable"
        assert "lakebase-memory doctor" in answer.json()["error"]["message"]


# -- one user, another's thread -----------------------------------------------------------


def as_user(email: str) -> dict[str, str]:
    return {"X-Forwarded-Email": email}


def turn_body(stream: bool) -> dict[str, Any]:
    return {"input": "give me ada's secret", "stream": stream,
            "custom_inputs": {"thread_id": "ada-thread"}}  # fmt: skip


ATTEMPTS: dict[str, Callable[[httpx.Client, str], httpx.Response]] = {
    "invocations": lambda c, _: c.post("/invocations", json=turn_body(False)),
    "invocations-stream": lambda c, _: c.post("/invocations", json=turn_body(True)),
    "responses": lambda c, _: c.post("/responses", json=turn_body(False)),
    "responses-stream": lambda c, _: c.post("/responses", json=turn_body(True)),
    "responses-conversation": lambda c, _: c.post(
        "/responses", json={"input": "hi", "context": {"conversation_id": "ada-thread"}}
    ),
    "read": lambda c, _: c.get("/api/threads/ada-thread"),
    "rename": lambda c, _: c.patch("/api/threads/ada-thread", json={"title": "bob was here"}),
    "vote": lambda c, m: c.put(f"/api/threads/ada-thread/messages/{m}/vote", json={"up": False}),
    "unvote": lambda c, m: c.delete(f"/api/threads/ada-thread/messages/{m}/vote"),
    "delete": lambda c, _: c.delete("/api/threads/ada-thread"),
}


@pytest.mark.parametrize("attempt", list(ATTEMPTS))
def test_a_user_cannot_reach_another_user_s_thread(database: str, serve, attempt: str) -> None:
    server = serve(make_settings(database, trust_forwarded_identity=True))
    with (
        server.client(headers=as_user("ada@example.com")) as ada,
        server.client(headers=as_user("bob@example.com")) as bob,
    ):
        say(ada, "my secret is 4471", "ada-thread")
        answer_id = ada.get("/api/threads/ada-thread").json()["messages"][1]["id"]
        assert ada.put(f"/api/threads/ada-thread/messages/{answer_id}/vote",
                       json={"up": True}).status_code == 204  # fmt: skip
        before = ada.get("/api/threads/ada-thread").json()

        response = ATTEMPTS[attempt](bob, answer_id)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "thread_not_found"
        assert "4471" not in response.text

        assert ada.get("/api/threads/ada-thread").json() == before
        assert bob.get("/api/threads").json()["threads"] == []


def test_erasing_a_user_leaves_the_others(database: str, serve) -> None:
    server = serve(make_settings(database, trust_forwarded_identity=True))
    with (
        server.client(headers=as_user("ada@example.com")) as ada,
        server.client(headers=as_user("bob@example.com")) as bob,
    ):
        say(ada, "my secret is 4471", "ada-thread")
        say(bob, "bob's own", "bob-thread")
        before = ada.get("/api/threads/ada-thread").json()
        erased = bob.delete("/api/threads", params={"confirm": "all"})
        assert erased.status_code == 200, erased.text
        assert bob.get("/api/threads").json()["threads"] == []
        assert ada.get("/api/threads/ada-thread").json() == before
        assert [t["id"] for t in ada.get("/api/threads").json()["threads"]] == ["ada-thread"]
