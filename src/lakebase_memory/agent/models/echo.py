"""A deterministic model that answers from the conversation it is given.

It makes memory observable: the answer quotes the latest user message, counts the user's
messages and quotes the first one, so a reply shows exactly what history the model saw.
Used by the tests and the benchmarks; selected with MODEL_BACKEND=echo.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

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


class EchoChatModel(BaseChatModel):
    """Streams its reply word by word, like a real model."""

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(echo_reply(messages)))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for piece in _pieces(echo_reply(messages)):
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
        for piece in _pieces(echo_reply(messages)):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk


def _pieces(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)
