"""One conversation turn: resolve the thread, append only what is new, run the agent.

Streaming and non-streaming requests share this path; the latter keeps the final event.

One turn at a time per thread: a turn takes the thread's lease before it reads the thread
and keeps it until its answer is saved, so a second request on the same thread meanwhile
gets 409 `thread_busy` (the client retries once the first answer is complete) instead of
two turns interleaving. The agent runs with LangGraph's `durability="exit"`: the turn is
saved once, when it ends (also when it fails), in one statement, checked against the lease;
a turn whose thread was deleted meanwhile writes nothing.

A turn runs in a task of its own (`start_turn`), not in the request: a client that goes away
(a closed tab, "stop", a dropped connection) stops receiving events, but the turn still
finishes, saves its question and answer, and releases its lease.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage

from lakebase_memory.agent.context import EstimatedTokens, message_tokens
from lakebase_memory.agent.graph import AGENT_NODE, CLIENT_TOOLS_KEY
from lakebase_memory.memory.history import message_text, new_messages
from lakebase_memory.memory.saver.ops import read_only, with_turn
from lakebase_memory.observability import metrics
from lakebase_memory.observability.tracing import traced_stream
from lakebase_memory.server.errors import ApiError
from lakebase_memory.server.events import Event, ResponseEvents
from lakebase_memory.server.protocol import ResponsesRequest
from lakebase_memory.server.runtime import AppRuntime

logger = logging.getLogger(__name__)


@dataclass
class PreparedTurn:
    thread_id: str
    graph_input: dict[str, list[BaseMessage]]
    config: dict[str, Any]
    turn_id: str
    chat_created_at: datetime  # the chat row's: which chat the turn's messages are synced to
    # A background response's stored id (`lakebase_memory.server.background`): its events carry it.
    response_id: str | None = None


async def prepare_turn(runtime: AppRuntime, request: ResponsesRequest, user: str) -> PreparedTurn:
    """Everything that can fail with a clean status, before a stream starts."""
    thread_id = request.thread_id()
    incoming = request.messages()
    _check_client_tools(runtime, request)
    await _check_each_fits(runtime, incoming)  # before anything is stored
    first_user_text = next((message_text(m) for m in incoming if isinstance(m, HumanMessage)), "")
    chat = await runtime.threads.claim(thread_id, user, first_user_text)
    # ThreadBusyError (another turn runs) answers 409 thread_busy, as every error is mapped.
    turn_id = await runtime.checkpointer.aacquire_turn(
        thread_id, user_id=user, lease_seconds=runtime.settings.turn_lease_seconds
    )
    # The agent's graph reads the thread's cached messages as they are, not copies: none of
    # its nodes edits a message it is given (each returns new ones), so a turn does not pay
    # for a copy of the whole thread and its cost stays flat as the thread grows.
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if request.tools:
        configurable[CLIENT_TOOLS_KEY] = [tool.for_model() for tool in request.tools]
    config = read_only(with_turn({"configurable": configurable}, turn_id, user))
    try:
        return await _new_input(runtime, thread_id, incoming, config, turn_id, chat.created_at)
    except BaseException:
        # Also when the request is cancelled (client gone): the release must still happen.
        release = runtime.checkpointer.arelease_turn_soon(
            thread_id, turn_id, lease_seconds=runtime.settings.turn_lease_seconds
        )
        await asyncio.shield(runtime.spawn(release))
        raise


def _check_client_tools(runtime: AppRuntime, request: ResponsesRequest) -> None:
    """422 for a client tool the server cannot take: the model would not know which to run."""
    names = [tool.name for tool in request.tools or ()]
    taken = set(runtime.tool_names)
    clashes = sorted({n for n in names if n in taken or names.count(n) > 1})
    if clashes:
        raise ApiError(
            422,
            "invalid_tools",
            f"Tool names must be unique and not the server's own ({', '.join(sorted(taken))}): "
            f"rename {', '.join(clashes)}.",
            details={"names": clashes},
        )


async def _check_each_fits(runtime: AppRuntime, incoming: list[BaseMessage]) -> None:
    """413 for a message the model could never be sent: alone it outgrows the window."""
    planner = runtime.planner
    window = planner.window
    limit = await planner.room()
    for message in incoming:
        size = await message_tokens(planner.counter, message)
        if size > limit:
            estimated = isinstance(planner.counter, EstimatedTokens)
            raise ApiError(
                413,
                "message_too_long",
                f"A {message.type} message of {size} tokens{' (estimated)' if estimated else ''}"
                f" does not fit the model's context window of {window.tokens} tokens, where one"
                f" message may take at most {limit} (the rest holds the system prompt, the "
                "summary and the answer). Shorten or split it; if the model's window is larger,"
                " set MODEL_CONTEXT_TOKENS.",
                details={"tokens": size, "limit": limit, "context_tokens": window.tokens},
            )


async def _new_input(
    runtime: AppRuntime,
    thread_id: str,
    incoming: list[BaseMessage],
    config: dict[str, Any],
    turn_id: str,
    chat_created_at: datetime,
) -> PreparedTurn:
    # The config is read-only (see prepare_turn): this look at the stored history costs no
    # copy of the thread either.
    state = await runtime.graph.aget_state(config)
    stored: list[BaseMessage] = state.values.get("messages", []) if state.values else []
    fresh = new_messages(stored, incoming)
    for message in fresh:
        message.id = message.id or str(uuid.uuid4())
    if not fresh and (not stored or isinstance(stored[-1], AIMessage)):
        raise ApiError(
            422,
            "nothing_new",
            f"Every message in input is already in thread '{thread_id}'. "
            "Add a new user message at the end of input.",
        )
    # With nothing new after an unanswered message (a failed turn), the agent answers it now.
    return PreparedTurn(thread_id, {"messages": fresh}, config, turn_id, chat_created_at)


def start_turn(runtime: AppRuntime, turn: PreparedTurn) -> AsyncIterator[Event]:
    """Run the turn in a task of the runtime; the returned iterator yields its events.

    The caller may stop iterating at any time: the turn goes on to its end either way.
    """
    queue: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()

    async def produce() -> None:
        try:
            async for event in run_turn(runtime, turn):
                queue.put_nowait(event)
        except Exception as error:
            queue.put_nowait(error)
        finally:
            queue.put_nowait(None)

    runtime.spawn(produce())

    async def events() -> AsyncIterator[Event]:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    return events()


@metrics.observed_turn
async def run_turn(runtime: AppRuntime, turn: PreparedTurn) -> AsyncIterator[Event]:
    events = ResponseEvents(turn.thread_id, response_id=turn.response_id)
    lease = runtime.checkpointer.aheld_turn(
        turn.thread_id, turn.turn_id, lease_seconds=runtime.settings.turn_lease_seconds
    )
    async with lease, metrics.lease_held():
        async for event in _run_agent(runtime, turn, events):
            yield event
    for event in events.completed():
        yield event


async def _run_agent(
    runtime: AppRuntime, turn: PreparedTurn, events: ResponseEvents
) -> AsyncIterator[Event]:
    for event in events.started():
        yield event
    state: dict[str, Any] = {}
    try:
        # Tracing off (the default), traced_stream is the astream call itself.
        async for mode, payload in traced_stream(
            runtime.tracing,
            runtime.graph.astream,
            turn.graph_input,
            turn.config,
            stream_mode=["messages", "updates", "values"],
            durability="exit",
        ):
            if mode == "messages":
                chunk, metadata = payload
                if metadata.get("langgraph_node") != AGENT_NODE:
                    continue  # the summary's own model call: not the answer
                if isinstance(chunk, AIMessageChunk) and chunk.tool_call_chunks:
                    for event in events.tool_call_delta(chunk):
                        yield event
                if isinstance(chunk, AIMessageChunk) and message_text(chunk):
                    for event in events.text_delta(chunk.id, message_text(chunk)):
                        yield event
            elif mode == "updates":
                for update in payload.values():
                    for message in (update or {}).get("messages", []):
                        for event in events.final_message(message):
                            yield event
            else:
                state = payload  # the thread's state after each step: the last one is saved
    finally:
        # Also after a failure: the user's message may be saved without an answer.
        await _sync_chat_messages(runtime, turn, state.get("messages", []))


async def _sync_chat_messages(
    runtime: AppRuntime, turn: PreparedTurn, messages: list[BaseMessage]
) -> None:
    # A thread deleted meanwhile has no chat row: the sync adds nothing to it.
    try:
        await runtime.messages.sync(turn.thread_id, messages, chat_created_at=turn.chat_created_at)
    except Exception as error:  # the turn's own outcome matters more; the next turn catches up
        logger.warning("could not copy thread %s to the chat messages: %s", turn.thread_id, error)
