"""A deterministic model that answers from the conversation it is given.

It makes memory observable: the answer quotes the latest user message, counts the user's
messages and quotes the first one, so a reply shows what history the model saw; `received`
holds the latest prompts themselves, as (role, text) pairs, so a test can check exactly which
messages reached the model (and the summary, in the system message).
Used by the tests and the benchmarks; selected with MODEL_BACKEND=echo.

With tools bound (`bind_tools`), it calls them by a fixed rule on the latest user message, so
tests drive the whole tool loop without a real model (`tool_call_for`):

- "Remember [that] <fact>" calls save_user_memory(memory_key=<the fact's first 8 words,
  lowercase, joined by "_">, memory_data_json={"fact": "<fact>"});
- "Recall <query>" and "What do you remember about <query>" call get_user_memory(query);
- "Forget <key>" calls delete_user_memory(memory_key);
- "Call <tool> <JSON object>" calls any bound tool with those arguments.

A rule fires only when its tool is bound. After the tools answered, the reply is the usual
one followed by each tool's answer: `Tool <name> answered: <output>`.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from lakebase_memory.memory.history import message_text


def echo_reply(messages: list[BaseMessage]) -> str:
    said = [message_text(m) for m in messages if isinstance(m, HumanMessage)]
    if not said:
        return "Hello! Send me a message and I will remember it."
    count = len(said)
    plural = "message" if count == 1 else "messages"
    return (
        f'You said: "{said[-1]}". You have sent {count} {plural} in this conversation; '
        f'the first was: "{said[0]}".'
    )


Prompt = list[tuple[str, str]]
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^\s*remember(?:\s+that)?[\s:,]+(?P<arg>.+?)\s*$", re.I | re.S),
        "save_user_memory",
    ),
    (re.compile(r"^\s*recall[\s:,]+(?P<arg>.+?)\??\s*$", re.I | re.S), "get_user_memory"),
    (
        re.compile(r"^\s*what do you remember about\s+(?P<arg>.+?)\??\s*$", re.I | re.S),
        "get_user_memory",
    ),
    (re.compile(r"^\s*forget[\s:,]+(?P<arg>\S+)\s*$", re.I), "delete_user_memory"),
)
_CALL = re.compile(r"^\s*call\s+(?P<name>[\w-]+)\s*(?P<args>\{.*\})?\s*$", re.I | re.S)


def memory_key_for(fact: str) -> str:
    """The key the echo model saves a fact under: its first 8 words, lowercase, by "_"."""
    return "_".join(re.findall(r"\w+", fact.lower())[:8]) or "fact"


def tool_call_for(text: str, tool_names: Sequence[str]) -> ToolCall | None:
    """The tool call the echo model makes for a user message, if a rule fires."""
    call = _CALL.match(text)
    if call and call["name"] in tool_names:
        try:
            args = json.loads(call["args"] or "{}")
        except json.JSONDecodeError:
            return None
        return ToolCall(name=call["name"], args=args, id=_call_id())
    for pattern, name in _RULES:
        match = pattern.match(text)
        if not match or name not in tool_names:
            continue
        arg = match["arg"]
        if name == "save_user_memory":
            args = {"memory_key": memory_key_for(arg),
                    "memory_data_json": json.dumps({"fact": arg})}  # fmt: skip
        elif name == "get_user_memory":
            args = {"query": arg}
        else:
            args = {"memory_key": arg}
        return ToolCall(name=name, args=args, id=_call_id())
    return None


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _tool_names(tools: Sequence[dict[str, Any]] | None) -> list[str]:
    return [t.get("function", t).get("name", "") for t in tools or ()]


def _tools_answered(messages: list[BaseMessage]) -> list[str]:
    """`Tool <name> answered: <output>` for the tool results after the last AI message."""
    results: list[ToolMessage] = []
    for message in reversed(messages):
        if not isinstance(message, ToolMessage):
            break
        results.insert(0, message)
    names: dict[str, str] = {}
    for message in messages:
        if isinstance(message, AIMessage):
            names.update({c["id"] or "": c["name"] for c in message.tool_calls})
    return [
        f"Tool {names.get(r.tool_call_id, 'tool')} answered: {message_text(r)}" for r in results
    ]


class EchoChatModel(BaseChatModel):
    """Streams its reply word by word, like a real model."""

    # A pause before each streamed word, to watch a stream (or to stop a server mid-answer).
    delay_seconds: float = 0.0
    _received: deque[Prompt] = PrivateAttr(default_factory=lambda: deque(maxlen=100))

    @property
    def _llm_type(self) -> str:
        return "echo"

    @property
    def received(self) -> list[Prompt]:
        """The latest prompts this model was sent, oldest first (up to 100)."""
        return list(self._received)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, BaseMessage]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _reply(self, messages: list[BaseMessage], **kwargs: Any) -> AIMessage:
        self._received.append([(m.type, message_text(m)) for m in messages])
        last = messages[-1] if messages else None
        if isinstance(last, HumanMessage):
            call = tool_call_for(message_text(last), _tool_names(kwargs.get("tools")))
            if call is not None:
                return AIMessage(content="", tool_calls=[call])
        answered = _tools_answered(messages)
        return AIMessage(" ".join([echo_reply(messages), *answered]))

    def _chunks(self, reply: AIMessage) -> Iterator[AIMessageChunk]:
        for call in reply.tool_calls:
            arguments = json.dumps(call["args"])
            half = len(arguments) // 2  # two deltas: a client sees the arguments stream
            for n, piece in enumerate((arguments[:half], arguments[half:])):
                yield AIMessageChunk(content="", tool_call_chunks=[{
                    "name": call["name"] if n == 0 else None, "args": piece,
                    "id": call["id"] if n == 0 else None, "index": 0, "type": "tool_call_chunk",
                }])  # fmt: skip
        for piece in _pieces(message_text(reply)):
            yield AIMessageChunk(content=piece)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, **kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for message in self._chunks(self._reply(messages, **kwargs)):
            chunk = ChatGenerationChunk(message=message)
            if run_manager:
                run_manager.on_llm_new_token(message_text(message), chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for message in self._chunks(self._reply(messages, **kwargs)):
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            chunk = ChatGenerationChunk(message=message)
            if run_manager:
                await run_manager.on_llm_new_token(message_text(message), chunk=chunk)
            yield chunk


def _pieces(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)
