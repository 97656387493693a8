"""A deterministic model that answers from the conversation it is given.

It makes memory observable: the answer quotes the latest user message, counts the user's
messages and quotes the first one, so a reply shows what history the model saw; `received`
holds the latest prompts themselves, as (role, text) pairs, so a test can check exactly which
messages reached the model (and the summary, in the system message).
Used by the tests and the benchmarks; selected with MODEL_BACKEND=echo.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
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

    def _reply(self, messages: list[BaseMessage]) -> str:
        self._received.append([(m.type, message_text(m)) for m in messages])
        return echo_reply(messages)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self._reply(messages)))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for piece in _pieces(self._reply(messages)):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for piece in _pieces(self._reply(messages)):
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk


def _pieces(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)
