"""The thread API and who may see which thread."""

from __future__ import annotations

import httpx
import pytest

from conftest import answer_text, make_settings, say, sse_events
from saver_fixtures import CHECKPOINT_TABLES, checkpoint_rows


def test_list_is_newest_first_with_titles_and_timestamps(client: httpx.Client) -> None:
    for name in ("first", "second", "third"):
        say(client, f"{name} chat " + "long " * 30, name)
    say(client, "activity moves it up", "first")
    threads = client.get("/api/threads").json()["threads"]
    assert [t["id"] for t in threads] == ["first", "third", "second"]
    assert threads[1]["title"].startswith("third chat long")
    assert len(threads[1]["title"]) <= 80 and threads[1]["title"].endswith("…")
    assert (
        threads[0]["created_at"].endswith("Z")
        and threads[0]["updated_at"] >= threads[0]["created_at"]
    )


def test_pagination_walks_every_thread_once(client: httpx.Client) -> None:
    for i in range(7):
        say(client, f"chat {i}", f"p{i}")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/threads", params=params).json()
        seen += [t["id"] for t in page["threads"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"p{i}" for i in reversed(range(7))]


def test_get_returns_messages_and_delete_erases_memory(client: httpx.Client) -> None:
    answer = answer_text(say(client, "keep this", "del"))
    thread = client.get("/api/threads/del").json()
    assert thread["title"] == "keep this"
    assert [(m["role"], m["content"]) for m in thread["messages"]] == [
        ("user", "keep this"), ("assistant", answer)
    ]  # fmt: skip
    assert client.delete("/api/threads/del").status_code == 204
    assert client.get("/api/threads/del").status_code == 404
    assert "del" not in [t["id"] for t in client.get("/api/threads").json()["threads"]]
    # The same id starts a fresh conversation: the checkpoints went with the chat.
    assert "You have sent 1 message" in answer_text(say(client, "new start", "del"))


def test_delete_removes_every_checkpoint_row(client: httpx.Client, database: str) -> None:
    import psycopg

    say(client, "a", "rows")
    say(client, "b", "rows")
    client.delete("/api/threads/rows")
    assert checkpoint_rows(database, "rows") == dict.fromkeys(CHECKPOINT_TABLES, 0)
    with psycopg.connect(database) as conn:
        chats = conn.execute("""SELECT count(*) FROM ai_chatbot."Chat" WHERE "threadId" = 'rows'""")
        assert chats.fetchone() == (0,)
        assert conn.execute('SELECT count(*) FROM ai_chatbot."Message"').fetchone() == (0,)


def test_uuid_thread_is_its_chat_id(client: httpx.Client) -> None:
    thread_id = "0196f1d2-8c1e-7a5b-9f00-1234567890ab"
    say(client, "uuid", thread_id)
    listed = client.get("/api/threads").json()["threads"][0]
    assert listed["id"] == listed["chat_id"] == thread_id


@pytest.fixture
def trusted(database: str, serve):
    return serve(make_settings(database, trust_forwarded_identity=True))


def as_user(email: str) -> dict[str, str]:
    return {"X-Forwarded-Email": email}


def test_users_see_only_their_own_threads(trusted) -> None:
    with (
        trusted.client(headers=as_user("ada@example.com")) as ada,
        trusted.client(headers=as_user("bob@example.com")) as bob,
    ):
        say(ada, "ada's secret", "ada-thread")
        say(bob, "bob's note", "bob-thread")
        assert [t["id"] for t in ada.get("/api/threads").json()["threads"]] == ["ada-thread"]
        assert [t["id"] for t in bob.get("/api/threads").json()["threads"]] == ["bob-thread"]
        assert bob.get("/api/threads/ada-thread").status_code == 404
        assert bob.delete("/api/threads/ada-thread").status_code == 404
        stolen = bob.post(
            "/invocations", json={"input": "hi", "custom_inputs": {"thread_id": "ada-thread"}}
        )
        assert stolen.status_code == 404
        assert stolen.json()["error"]["code"] == "thread_not_found"
        streamed = bob.post(
            "/invocations",
            json={"input": "hi", "stream": True, "custom_inputs": {"thread_id": "ada-thread"}},
        )
        assert streamed.status_code == 404
        # Ada's thread is untouched by Bob's attempts.
        assert len(ada.get("/api/threads/ada-thread").json()["messages"]) == 2


def test_forwarded_user_header_is_used_when_email_is_absent(trusted) -> None:
    with trusted.client(headers={"X-Forwarded-User": "sp-1234"}) as sp:
        say(sp, "from a service principal", "sp-thread")
        assert sp.get("/api/threads/sp-thread").status_code == 200


def test_trusted_mode_without_identity_is_401(trusted) -> None:
    with trusted.client() as anonymous:
        response = anonymous.get("/api/threads")
    assert response.status_code == 401
    assert "X-Forwarded-Email" in response.json()["error"]["message"]


def test_forwarded_headers_are_ignored_locally(client: httpx.Client) -> None:
    say(
        client,
        "mine",
        "local-thread",
    )
    spoofed = client.get("/api/threads", headers=as_user("someone@else.com")).json()["threads"]
    # Locally every caller is the one local user: a header cannot switch identity.
    assert [t["id"] for t in spoofed] == ["local-thread"]


def test_databricks_app_trusts_forwarded_identity_by_default(database: str) -> None:
    settings = make_settings(database, databricks_app_name="my-app")
    assert settings.trusts_forwarded_identity
    assert not make_settings(database).trusts_forwarded_identity


def test_rename(client: httpx.Client) -> None:
    say(client, "original title", "ren")
    renamed = client.patch("/api/threads/ren", json={"title": "  A   better title "})
    assert renamed.status_code == 200 and renamed.json()["title"] == "A better title"
    assert client.get("/api/threads").json()["threads"][0]["title"] == "A better title"
    blank = client.patch("/api/threads/ren", json={"title": "   "})
    assert blank.status_code == 422 and "title is empty" in blank.json()["error"]["message"]
    too_long = client.patch("/api/threads/ren", json={"title": "x" * 201})
    assert too_long.status_code == 422
    assert client.patch("/api/threads/nope", json={"title": "t"}).status_code == 404


def test_chat_messages_mirror_the_thread(client: httpx.Client, database: str) -> None:
    import psycopg

    say(client, "hello there", "mirror")
    say(client, "second", "mirror")
    api_messages = client.get("/api/threads/mirror").json()["messages"]
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            'SELECT m.id::text, m.role, m.parts FROM ai_chatbot."Message" m '
            'JOIN ai_chatbot."Chat" c ON c.id = m."chatId" WHERE c."threadId" = %s '
            'ORDER BY m."createdAt"',
            ("mirror",),
        ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(m["id"], m["role"]) for m in api_messages]
    assert rows[0][2] == [{"type": "text", "text": "hello there"}]
    client.delete("/api/threads/mirror")
    with psycopg.connect(database) as conn:
        assert conn.execute('SELECT count(*) FROM ai_chatbot."Message"').fetchone() == (0,)


def test_votes(client: httpx.Client) -> None:
    say(client, "vote on this", "votes")
    answer = client.get("/api/threads/votes").json()["messages"][1]
    assert answer["role"] == "assistant" and answer["vote"] is None
    path = f"/api/threads/votes/messages/{answer['id']}/vote"
    assert client.put(path, json={"up": True}).status_code == 204
    assert client.get("/api/threads/votes").json()["messages"][1]["vote"] is True
    assert client.put(path, json={"up": False}).status_code == 204
    assert client.get("/api/threads/votes").json()["messages"][1]["vote"] is False
    assert client.delete(path).status_code == 204
    assert client.get("/api/threads/votes").json()["messages"][1]["vote"] is None
    unknown = client.put("/api/threads/votes/messages/not-a-uuid/vote", json={"up": True})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "message_not_found"
    assert client.put(path, json={"up": "maybe"}).status_code == 422


def test_answers_carry_the_id_votes_take(client: httpx.Client) -> None:
    """A finished answer's message item names its id in the thread API (`message_id`, an extra
    field on the Responses item), plain and streamed, so a client votes without reading the
    thread back."""
    item = say(client, "vote on me", "ids")["output"][0]
    body = {"input": "and on me", "custom_inputs": {"thread_id": "ids"}, "stream": True}
    events = [e for e in sse_events(client.post("/responses", json=body)) if isinstance(e, dict)]
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    completed = events[-1]["response"]["output"]
    messages = client.get("/api/threads/ids").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert set(item) == {"type", "id", "role", "status", "content", "message_id"}
    assert item["message_id"] == messages[1]["id"]
    assert done[-1]["message_id"] == completed[-1]["message_id"] == messages[3]["id"]
    assert done[-1]["id"] == completed[-1]["id"]  # the Responses item id is unchanged
    path = f"/api/threads/ids/messages/{done[-1]['message_id']}/vote"
    assert client.put(path, json={"up": True}).status_code == 204
    assert client.get("/api/threads/ids").json()["messages"][3]["vote"] is True


def test_votes_and_renames_are_per_user(trusted) -> None:
    with (
        trusted.client(headers=as_user("ada@example.com")) as ada,
        trusted.client(headers=as_user("bob@example.com")) as bob,
    ):
        say(ada, "ada's", "private")
        answer_id = ada.get("/api/threads/private").json()["messages"][1]["id"]
        path = f"/api/threads/private/messages/{answer_id}/vote"
        assert bob.put(path, json={"up": False}).status_code == 404
        assert bob.patch("/api/threads/private", json={"title": "mine now"}).status_code == 404
        assert ada.get("/api/threads/private").json()["title"] == "ada's"
        assert ada.get("/api/me").json() == {"user": "ada@example.com"}


def test_threads_carry_their_size_and_last_activity(client: httpx.Client) -> None:
    """Needs the server's saver to keep message_count and size_bytes of each thread."""
    say(client, "first", "sized")
    listed = client.get("/api/threads").json()["threads"][0]
    say(client, "second " * 40, "sized")
    again = client.get("/api/threads").json()["threads"][0]
    assert (listed["message_count"], again["message_count"]) == (2, 4)
    assert 0 < listed["size_bytes"] < again["size_bytes"]
    assert again["last_activity"].endswith("Z") and again["last_activity"] >= again["updated_at"]
    assert again["last_activity"] > listed["last_activity"]
    one = client.get("/api/threads/sized").json()
    assert {k: one[k] for k in again} == again and len(one["messages"]) == 4


def test_a_thread_without_saver_stats_lists_with_zeros(client: httpx.Client, database: str) -> None:
    import psycopg

    say(client, "from the stock saver's days", "old-style")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DELETE FROM ai_chatbot.checkpoint_threads WHERE thread_id = 'old-style'")
    listed = client.get("/api/threads").json()["threads"][0]
    assert (listed["id"], listed["message_count"], listed["size_bytes"]) == ("old-style", 0, 0)
    assert listed["last_activity"] == listed["updated_at"]
    assert client.get("/api/threads/old-style").json()["message_count"] == 0
    assert client.delete("/api/threads/old-style").status_code == 204


def test_erase_all_my_data_needs_confirmation_and_spares_others(trusted, database: str) -> None:
    import psycopg

    with (
        trusted.client(headers=as_user("ada@example.com")) as ada,
        trusted.client(headers=as_user("bob@example.com")) as bob,
    ):
        say(ada, "one", "ada-1")
        say(ada, "two", "ada-2")
        say(bob, "bob's", "bob-1")
        for params in ({}, {"confirm": "yes"}):
            refused = ada.delete("/api/threads", params=params)
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["code"] == "confirmation_required" and "confirm=all" in error["message"]
        assert len(ada.get("/api/threads").json()["threads"]) == 2
        erased = ada.delete("/api/threads", params={"confirm": "all"})
        assert erased.status_code == 200, erased.text
        body = erased.json()
        assert body["user"] == "ada@example.com"
        assert body["deleted"]["threads"] == 2 and body["deleted"]["chats"] == 2
        assert body["deleted"]["checkpoints"] > 0 and body["deleted"]["checkpoint_messages"] == 4
        assert ada.get("/api/threads").json()["threads"] == []
        assert ada.get("/api/threads/ada-1").status_code == 404
        assert [t["id"] for t in bob.get("/api/threads").json()["threads"]] == ["bob-1"]
        assert len(bob.get("/api/threads/bob-1").json()["messages"]) == 2
        assert bob.delete("/api/threads/ada-2").status_code == 404
    with psycopg.connect(database) as conn:
        left = conn.execute(
            "SELECT thread_id FROM checkpoints UNION SELECT thread_id FROM "
            "ai_chatbot.checkpoint_messages UNION SELECT thread_id FROM "
            'ai_chatbot.checkpoint_threads UNION SELECT "threadId" FROM ai_chatbot."Chat"'
        ).fetchall()
    assert {r[0] for r in left} == {"bob-1"}
