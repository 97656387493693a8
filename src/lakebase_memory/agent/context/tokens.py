"""Counting a prompt's tokens: with the model's own tokenizer where there is one (llama.cpp),
a safe over-estimate elsewhere; each distinct text counted once per process."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from langchain_core.messages import AIMessage, BaseMessage

from lakebase_memory.memory.history import message_text

# What a chat template adds around each message's text (ChatML: "<|im_start|>user\n" and
# "<|im_end|>\n", 5 tokens; Llama 3 and others: up to 8).
MESSAGE_OVERHEAD = 8
BYTES_PER_TOKEN_ESTIMATE = 3  # BPE tokenizers average 4+ bytes of English per token: safe


class TokenCounter(Protocol):
    async def count(self, text: str) -> int: ...


class EstimatedTokens:
    """For models whose tokenizer is not at hand (remote endpoints, the echo model): one token
    per 3 bytes of UTF-8 never counts fewer tokens than a real tokenizer's for ordinary text
    (English runs about 4.5 bytes a token, CJK about 3)."""

    async def count(self, text: str) -> int:
        return -(-len(text.encode()) // BYTES_PER_TOKEN_ESTIMATE)


class CachedTokens:
    """Remembers counts by a digest of the text: a thread's messages are counted at their
    first turn, not at every one."""

    def __init__(self, count: Callable[[str], Awaitable[int]], max_entries: int = 100_000) -> None:
        self._count = count
        self._max_entries = max_entries
        self._known: OrderedDict[bytes, int] = OrderedDict()

    async def count(self, text: str) -> int:
        key = hashlib.blake2b(text.encode(), digest_size=16).digest()
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)
            return known
        counted = await self._count(text)
        self._known[key] = counted
        if len(self._known) > self._max_entries:
            self._known.popitem(last=False)
        return counted


def prompt_text(message: BaseMessage) -> str:
    """What of a message reaches the model as text: its content and any tool calls."""
    text = message_text(message)
    if isinstance(message, AIMessage) and message.tool_calls:
        calls = [{"name": c["name"], "arguments": c["args"]} for c in message.tool_calls]
        text += json.dumps(calls, ensure_ascii=False)
    return text


async def message_tokens(counter: TokenCounter, message: BaseMessage) -> int:
    return await counter.count(prompt_text(message)) + MESSAGE_OVERHEAD
