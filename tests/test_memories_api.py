"""The long-term memory API (/api/memories) against a live server and a real PostgreSQL: each
endpoint, each error, and one user reaching for another's memories."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest

from conftest import LiveServer, make_settings, say
from lakebase_memory.memory.store import namespace_prefix

ADA = {"X-Forwarded-Email": "ada@example.com"}
BOB = {"X-Forwarded-Email": "bob@example.com"}


def path(key: str) -> str:
    return f"/api/memories/{quote(key, safe='')}"


def put(client: httpx.Client, key: str, value: dict[str, Any]) -> dict[str, Any]:
    response = client.put(path(key), json={"value": value})
    assert response.status_code == 200, response.text
    return response.json()


def keys(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/api/memories", params=params)
    assert response.status_code == 200, response.text
    return [m["key"] for m in response.json()["memories"]]


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    for word in words:
        assert word in body["error"]["message"], body


@pytest.fixture
def trusted(database: str, serve) -> LiveServer:
    return serve(make_settings(database, trust_forwarded_identity=True))


# -- each endpoint ------------------------------------------------------------------------


def test_put_creates_then_get_reads_it(client: httpx.Client) -> None:
    created = put(client, "favourite_colour", {"fact": "blue", "since": 2020})
    assert set(created) == {"key", "value", "created_at", "updated_at", "score"}
    assert created["key"] == "favourite_colour"
    assert created["value"] == {"fact": "blue", "since": 2020}
    assert created["created_at"].endswith("Z") and created["created_at"] == created["updated_at"]
    assert created["score"] is None
    assert client.get(path("favourite_colour")).json() == created


def test_put_replaces_the_value_and_keeps_created_at(client: httpx.Client) -> None:
    first = put(client, "diet", {"fact": "vegetarian"})
    time.sleep(0.01)
    second = put(client, "diet", {"fact": "vegan", "strict": True})
    assert second["value"] == {"fact": "vegan", "strict": True}  # replaced, not merged
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] > first["updated_at"]
    assert keys(client) == ["diet"]


def test_list_is_most_recently_updated_first(client: httpx.Client) -> None:
    for key in ("one", "two", "three"):
        put(client, key, {"n": key})
    assert keys(client) == ["three", "two", "one"]
    put(client, "one", {"n": "one again"})
    listing = client.get("/api/memories").json()
    assert [m["key"] for m in listing["memories"]] == ["one", "three", "two"]
    assert listing["memories"][0]["value"] == {"n": "one again"}
    assert {m["score"] for m in listing["memories"]} == {None}
    assert (listing["query"], listing["limit"], listing["offset"], listing["next_offset"]) == (
        None, 20, 0, None
    )  # fmt: skip


def test_paging_walks_every_memory_once(client: httpx.Client) -> None:
    for i in range(7):
        put(client, f"m{i}", {"i": i})
    seen: list[str] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = client.get("/api/memories", params={"limit": 3, "offset": offset}).json()
        assert page["limit"] == 3 and page["offset"] == offset
        seen += [m["key"] for m in page["memories"]]
        offset = page["next_offset"]
        pages += 1
    assert pages == 3
    assert seen == [f"m{i}" for i in reversed(range(7))]
    # Exactly a page's worth left: no empty page after it.
    assert client.get("/api/memories", params={"limit": 7}).json()["next_offset"] is None
    assert client.get("/api/memories", params={"limit": 6}).json()["next_offset"] == 6


def test_search_finds_by_words_best_first(client: httpx.Client) -> None:
    put(client, "colour", {"fact": "my favourite colour is blue"})
    put(client, "pet", {"fact": "has a cat called Blue Moon, a blue cat"})
    put(client, "job", {"fact": "works as a carpenter"})
    found = client.get("/api/memories", params={"query": "blue cat"}).json()
    assert found["query"] == "blue cat"
    assert [m["key"] for m in found["memories"]] == ["pet", "colour"]
    scores = [m["score"] for m in found["memories"]]
    assert all(isinstance(s, float) and s > 0 for s in scores) and scores[0] > scores[1]
    assert keys(client, query="carpenters") == ["job"]  # stemmed
    assert keys(client, query="favourite_colour") == ["colour"]  # words of the query
    assert keys(client, query="giraffe") == []
    assert keys(client, query="   ") == ["job", "pet", "colour"]  # blank: the listing
    assert keys(client, query="") == ["job", "pet", "colour"]
    assert keys(client, query="'); DROP TABLE store; --") == []  # data, never SQL
    assert keys(client, query="blue", limit=1) == ["pet"]


def test_delete_one(client: httpx.Client) -> None:
    put(client, "gone", {"fact": "temporary"})
    put(client, "kept", {"fact": "stays"})
    deleted = client.delete(path("gone"))
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(client.get(path("gone")), 404, "memory_not_found", "GET /api/memories")
    assert_error(client.delete(path("gone")), 404, "memory_not_found")
    assert keys(client) == ["kept"]


def test_forget_all_needs_confirmation(client: httpx.Client) -> None:
    put(client, "a", {"x": 1})
    put(client, "b", {"x": 2})
    for params in ({}, {"confirm": "yes"}, {"confirm": "ALL"}):
        refused = client.delete("/api/memories", params=params)
        assert_error(refused, 400, "confirmation_required", "confirm=all")
    assert keys(client) == ["b", "a"]
    erased = client.delete("/api/memories", params={"confirm": "all"})
    assert erased.status_code == 200, erased.text
    assert erased.json() == {"user": client.get("/api/me").json()["user"], "deleted": 2}
    assert keys(client) == []
    assert client.delete("/api/memories", params={"confirm": "all"}).json()["deleted"] == 0


def test_keys_are_data_verbatim(client: httpx.Client) -> None:
    odd = [
        "with/slashes/../and dots.", "quote's \"double\"", "100% _under_ \\back",
        "emoji 🧠 and ‏rtl‏", "e\u0301 combining", " padded ", "x" * 512,
    ]  # fmt: skip
    for key in odd:
        assert put(client, key, {"key": key})["key"] == key
        assert client.get(path(key)).json()["value"] == {"key": key}
    assert sorted(keys(client, limit=100)) == sorted(odd)
    for key in odd:
        assert client.delete(path(key)).status_code == 204
    assert keys(client) == []


def test_the_memories_rows_are_in_the_callers_namespace(client: httpx.Client, database: str):
    put(client, "where", {"fact": "here"})
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT prefix, key, value FROM store").fetchall()
    user = client.get("/api/me").json()["user"]
    assert rows == [(namespace_prefix(user), "where", {"fact": "here"})]


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize(
    ("key", "words"),
    [("", "empty"), ("   ", "empty"), ("x" * 513, "at most 512"), ("a\x00b", "NUL")],
    ids=["empty", "blank", "too-long", "nul"],
)
def test_invalid_keys_are_422(client: httpx.Client, method: str, key: str, words: str) -> None:
    response = client.request(method, path(key), json={"value": {"fact": "x"}})
    assert_error(response, 422, "invalid_memory_key", words)
    assert keys(client) == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"value": ["a", "list"]}, "not an array"),
        ({"value": "a string"}, "not a string"),
        ({"value": 42}, "not a number"),
        ({"value": None}, "not null"),
        ({"value": True}, "not a boolean"),
        ({}, "value: Field required"),
        ({"value": {"fact": "nul \x00 inside"}}, "NUL"),
        ({"value": {"nested": [{"k\x00ey": "in a key"}]}}, "NUL"),
    ],
    ids=["list", "string", "number", "null", "bool", "missing", "nul", "nul-in-key"],
)
def test_a_value_must_be_a_storable_json_object(
    client: httpx.Client, body: dict[str, Any], words: str
) -> None:
    response = client.put(path("k"), json=body)
    assert_error(response, 422, "invalid_request", "value", words)
    if body.get("value") is not None and not isinstance(body["value"], dict):
        assert "JSON object" in response.json()["error"]["message"]
    assert_error(client.get(path("k")), 404, "memory_not_found")


def test_a_value_with_an_unpaired_surrogate_or_bad_json_is_refused(client: httpx.Client) -> None:
    json_headers = {"content-type": "application/json"}
    lone = client.put(path("k"), content=b'{"value": {"fact": "\\ud800"}}', headers=json_headers)
    assert_error(lone, 422, "invalid_request", "not valid Unicode")
    broken = client.put(path("k"), content=b'{"value": {', headers=json_headers)
    assert_error(broken, 400, "invalid_request", "not valid JSON")
    assert keys(client) == []


def test_invalid_list_parameters(client: httpx.Client) -> None:
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"offset": -1}):
        assert_error(client.get("/api/memories", params=params), 422, "invalid_request")
    nul = client.get("/api/memories", params={"query": "a\x00b"})
    assert_error(nul, 422, "invalid_request", "query", "NUL")
    assert client.get("/api/memories", params={"limit": 100}).status_code == 200


def test_a_value_too_large_to_index_is_refused_with_the_reason(client: httpx.Client) -> None:
    # 120,000 distinct six-letter words: under the 1 MB body limit, but their full-text
    # vector is over PostgreSQL's 1 MB for a tsvector.
    letters = "bcdfghjklmnpqrstvwxz"
    words = ["".join(letters[(i // 20**p) % 20] for p in range(5)) + "y" for i in range(120_000)]
    body = {"value": {"fact": " ".join(words)}}
    assert len(json.dumps(body)) < 1_000_000
    response = client.put(path("huge"), json=body)
    assert_error(response, 422, "invalid_value", "too long for tsvector")
    assert keys(client) == []


# -- who sees what ------------------------------------------------------------------------


def test_users_reach_only_their_own_memories(trusted: LiveServer, database: str) -> None:
    with trusted.client(headers=ADA) as ada, trusted.client(headers=BOB) as bob:
        put(ada, "secret", {"fact": "ada's secret plan"})
        put(ada, "shared_name", {"fact": "ada's version"})
        put(bob, "shared_name", {"fact": "bob's version"})  # same key: bob's own item

        assert keys(ada) == ["shared_name", "secret"]
        assert keys(bob) == ["shared_name"]
        assert keys(bob, query="secret plan") == []  # search: only bob's namespace
        assert_error(bob.get(path("secret")), 404, "memory_not_found")
        assert_error(bob.delete(path("secret")), 404, "memory_not_found")
        assert bob.get(path("shared_name")).json()["value"] == {"fact": "bob's version"}
        put(bob, "secret", {"fact": "bob overwrote it"})  # creates bob's, not ada's
        assert bob.delete(path("shared_name")).status_code == 204
        assert bob.delete("/api/memories", params={"confirm": "all"}).json() == {
            "user": "bob@example.com", "deleted": 1
        }  # fmt: skip

        assert ada.get(path("secret")).json()["value"] == {"fact": "ada's secret plan"}
        assert ada.get(path("shared_name")).json()["value"] == {"fact": "ada's version"}
        assert keys(ada) == ["shared_name", "secret"]
        assert keys(bob) == []
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT prefix, key FROM store ORDER BY key").fetchall()
    assert rows == [
        ("user_memories.ada@example-com", "secret"),
        ("user_memories.ada@example-com", "shared_name"),
    ]


def test_without_an_identity_in_trusted_mode_every_endpoint_is_401(trusted: LiveServer) -> None:
    with trusted.client(headers=ADA) as ada:
        put(ada, "mine", {"fact": "ada's"})
    with trusted.client() as anonymous:
        answers = [
            anonymous.get("/api/memories"),
            anonymous.get(path("mine")),
            anonymous.put(path("mine"), json={"value": {"fact": "stolen"}}),
            anonymous.delete(path("mine")),
            anonymous.delete("/api/memories", params={"confirm": "all"}),
        ]
    for answer in answers:
        assert_error(answer, 401, "unauthenticated", "X-Forwarded-Email")
    with trusted.client(headers=ADA) as ada:
        assert ada.get(path("mine")).json()["value"] == {"fact": "ada's"}


def test_forwarded_headers_are_ignored_locally(client: httpx.Client) -> None:
    put(client, "local_fact", {"fact": "mine"})
    spoofed = client.get("/api/memories", headers=ADA).json()["memories"]
    assert [m["key"] for m in spoofed] == ["local_fact"]  # still the one local user


# -- what the agent's memory tools do, seen through this API and the thread ----------------


def test_what_the_agent_saves_is_listed_and_its_calls_are_in_the_thread(
    client: httpx.Client,
) -> None:
    say(client, "Remember that my favourite colour is blue", "agent-saves")
    item = client.get(path("my_favourite_colour_is_blue")).json()
    assert item["value"] == {"fact": "my favourite colour is blue"}
    messages = client.get("/api/threads/agent-saves").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    call = messages[1]["tool_calls"]
    assert messages[1]["content"] == "" and len(call) == 1
    assert call[0]["name"] == "save_user_memory"
    assert call[0]["arguments"] == {
        "memory_key": "my_favourite_colour_is_blue",
        "memory_data_json": '{"fact": "my favourite colour is blue"}',
    }
    result = messages[2]
    assert result["call_id"] == call[0]["call_id"]
    assert (result["name"], result["status"]) == ("save_user_memory", "success")
    assert result["content"] == "Successfully saved memory 'my_favourite_colour_is_blue' for user."

    # Edited through the API, the agent reads the new value in another chat.
    put(client, "my_favourite_colour_is_blue", {"fact": "my favourite colour is now green"})
    reply = say(client, "Recall my favourite colour", "agent-reads")
    outputs = [i["output"] for i in reply["output"] if i["type"] == "function_call_output"]
    assert len(outputs) == 1 and "now green" in outputs[0]
    say(client, "forget my_favourite_colour_is_blue", "agent-forgets")
    assert_error(client.get(path("my_favourite_colour_is_blue")), 404, "memory_not_found")


def test_the_agent_saves_in_the_callers_namespace(trusted: LiveServer) -> None:
    with trusted.client(headers=ADA) as ada, trusted.client(headers=BOB) as bob:
        say(ada, "Remember that I am allergic to peanuts", "ada-chat")
        assert keys(ada) == ["i_am_allergic_to_peanuts"]
        assert keys(bob) == []
        reply = say(bob, "Recall allergies peanuts", "bob-chat")
        outputs = [i["output"] for i in reply["output"] if i["type"] == "function_call_output"]
        assert outputs == ["No memories found for this user."]
