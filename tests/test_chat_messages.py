"""The chat's `"Message"` rows follow the thread: each sync adds what is new, and a process
sends only what follows the messages it synced itself, unless the thread or chat changed."""

from __future__ import annotations

import asyncio
from datetime import datetime

import psycopg
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from psycopg_pool import AsyncConnectionPool

from lakebase_memory.memory.chat_messages import ChatMessages, message_uuid
from lakebase_memory.memory.threads import ThreadCatalogue, chat_id_for

COUNT = 'SELECT count(*) FROM ai_chatbot."Message" WHERE "chatId" = %s'


def conversation(turns: int) -> list[BaseMessage]:
    messages: list[BaseMessage] = []
    for n in range(turns):
        messages += [HumanMessage(f"q{n}", id=f"q{n}"), AIMessage(f"a{n}", id=f"a{n}")]
    return messages


def rows(database: str, thread_id: str) -> int:
    with psycopg.connect(database) as conn:
        return conn.execute(COUNT, (chat_id_for(thread_id),)).fetchone()[0]


def forget_row(database: str, message: BaseMessage) -> None:
    """A row removed behind the app's back: only a full sync puts it back."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute('DELETE FROM ai_chatbot."Message" WHERE id = %s', (message_uuid(message),))


async def start_chat(threads: ThreadCatalogue, thread_id: str) -> datetime:
    return (await threads.claim(thread_id, "ann", "hello")).created_at


Chats = tuple[ThreadCatalogue, ChatMessages]


@pytest.fixture
def chats(app_pool: AsyncConnectionPool) -> Chats:
    return ThreadCatalogue(app_pool), ChatMessages(app_pool)


async def test_each_sync_adds_what_is_new_and_then_only_looks_at_the_tail(
    db: str, chats: Chats
) -> None:
    threads, chat = chats
    created = await start_chat(threads, "t")
    history = conversation(3)
    assert await chat.sync("t", history[:2], chat_created_at=created) == 2
    assert await chat.sync("t", history[:4], chat_created_at=created) == 2
    assert await chat.sync("t", history[:4], chat_created_at=created) == 0
    assert rows(db, "t") == 4
    # What this process synced is not looked up again: a row lost behind its back
    # stays lost for it, while a process that did not sync it adds it back.
    forget_row(db, history[0])
    assert await chat.sync("t", history, chat_created_at=created) == 2
    assert rows(db, "t") == 5
    assert await ChatMessages(chat.pool).sync("t", history, chat_created_at=created) == 1
    assert rows(db, "t") == 6


async def test_rewritten_history_and_a_chat_made_again_are_synced_whole(
    db: str, chats: Chats
) -> None:
    threads, chat = chats
    created = await start_chat(threads, "t")
    history = conversation(3)
    await chat.sync("t", history[:4], chat_created_at=created)
    forget_row(db, history[1])
    # A message replaced in the middle: the remembered prefix no longer matches.
    edited = [*history[:3], HumanMessage("summary", id="s"), *history[4:]]
    assert await chat.sync("t", edited, chat_created_at=created) == 4  # a0, s, q2, a2
    # A message removed from the middle: the list is now shorter than what was synced.
    forget_row(db, history[0])
    assert await chat.sync("t", edited[1:], chat_created_at=created) == 0
    assert await chat.sync("t", history, chat_created_at=created) == 1  # q0 again
    # The thread deleted and started again: a new chat, everything synced to it.
    await threads.delete("t", "ann")
    again = await start_chat(threads, "t")
    assert again != created
    assert await chat.sync("t", history, chat_created_at=again) == 6


async def test_a_fork_whose_messages_belong_to_another_chat_is_looked_up_whole(
    db: str, chats: Chats
) -> None:
    threads, chat = chats
    history = conversation(3)
    assert await chat.sync("a", history, chat_created_at=await start_chat(threads, "a")) == 6
    fork = await start_chat(threads, "b")  # same message ids: their rows are a's
    assert await chat.sync("b", history, chat_created_at=fork) == 0
    await threads.delete("a", "ann")
    more = [*history, HumanMessage("q3", id="q3")]
    assert await chat.sync("b", more, chat_created_at=fork) == 7


async def test_a_sync_to_a_deleted_chat_adds_nothing(db: str, chats: Chats) -> None:
    threads, chat = chats
    created = await start_chat(threads, "t")
    await threads.delete("t", "ann")
    assert await chat.sync("t", conversation(1), chat_created_at=created) == 0
    assert rows(db, "t") == 0


async def test_first_turns_of_one_new_thread_at_once_all_claim_it(app_pool) -> None:
    """Concurrent claims of a new thread race on the chat's primary key as well as on its
    thread id (the arbiter of ON CONFLICT): none may be taken for a different thread."""
    threads = ThreadCatalogue(app_pool)
    await app_pool.open()
    for round_ in range(300):
        thread_id = f"race-{round_}"
        claims = await asyncio.gather(
            *(threads.claim(thread_id, "ann", f"hello {n}") for n in range(4))
        )
        assert {claim.chat_id for claim in claims} == {chat_id_for(thread_id)}
