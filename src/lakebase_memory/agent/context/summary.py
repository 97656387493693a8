"""The running summary of what the model is no longer sent.

Two parts, both kept in the thread's state:

- notes, written by the same model when the window moves: it is sent the prompt it answered
  last (system prompt with the summary so far, then the messages being left out) and asked to
  update the notes. Sharing that prefix lets llama.cpp reuse its cache, so the call costs
  little more than the notes it writes.
- the user's own sentences that carry specifics (a number, a name, a quotation), verbatim.
  Small models drop exactly those from notes (SmolLM2-135M kept neither the name nor the code
  of a first message when tried), and they are what a conversation comes back to.

Both are capped: together at most the window's `summary_tokens`; the oldest sentences go
first when new ones need the room.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from lakebase_memory.agent.context.tokens import TokenCounter, message_tokens
from lakebase_memory.agent.context.window import SAFETY_TOKENS, ContextState, ContextWindow
from lakebase_memory.memory.history import message_text

NO_STREAM = "nostream"  # LangGraph's tag: this call's tokens are not the turn's answer
UPDATE_NOTES = (
    "Update the notes on the conversation so far: one short list of facts. Keep every fact the "
    "user gave: names, numbers, codes, dates, places, preferences and decisions, copied "
    "exactly. Leave out greetings and filler. Answer with the notes only."
)
SUMMARY_HEADING = "Summary of the earlier part of this conversation (no longer shown):"
FACT_CHARS = 300  # a longer sentence is cut
_SENTENCES = re.compile(r"[^.!?\n]+[.!?]*")
_NOT_NAMES = frozenset({"I", "I'm", "I've", "I'll", "I'd", "OK", "Ok"})


def with_summary(system_prompt: str, context: ContextState) -> str:
    """The system message the model is sent: the prompt, then the summary if there is one."""
    parts = [system_prompt]
    if context.facts or context.notes:
        parts.append(SUMMARY_HEADING)
    if context.facts:
        parts.append("The user said:\n" + "\n".join(f"- {fact}" for fact in context.facts))
    if context.notes:
        parts.append("Notes:\n" + context.notes)
    return "\n\n".join(parts)


def stated_facts(text: str) -> list[str]:
    """The sentences of `text` that carry a number, a name or a quotation."""
    facts = []
    for match in _SENTENCES.finditer(text):
        sentence = " ".join(match.group().split())
        words = sentence.split()
        if not words:
            continue
        specific = (
            any(c.isdigit() for c in sentence)
            or any(c in sentence for c in '"“”')
            or any(w[:1].isupper() and w.strip(",;:") not in _NOT_NAMES for w in words[1:])
        )
        if specific:
            facts.append(sentence[:FACT_CHARS])
    return facts


async def fold_into_summary(
    model: BaseChatModel,
    counter: TokenCounter,
    window: ContextWindow,
    system_prompt: str,
    context: ContextState,
    left_out: Sequence[BaseMessage],
) -> tuple[str, list[str]]:
    """The notes and facts that summarize `context`'s summary followed by `left_out`."""
    facts = list(context.facts)
    for message in left_out:
        if isinstance(message, HumanMessage):
            facts += [f for f in stated_facts(message_text(message)) if f not in facts]
    notes_limit = window.summary_tokens // 2
    notes = await _updated_notes(model, counter, window, system_prompt, context, left_out,
                                 notes_limit)  # fmt: skip
    notes = await _cut(counter, notes, notes_limit)
    room = window.summary_tokens - await counter.count(notes)
    kept: list[str] = []
    for fact in reversed(facts):  # newest first: the oldest give way
        cost = await counter.count(fact) + 2
        if cost > room:
            break
        kept.insert(0, fact)
        room -= cost
    return notes, kept


async def _updated_notes(
    model: BaseChatModel,
    counter: TokenCounter,
    window: ContextWindow,
    system_prompt: str,
    context: ContextState,
    left_out: Sequence[BaseMessage],
    limit: int,
) -> str:
    system = SystemMessage(with_summary(system_prompt, context))
    request = HumanMessage(UPDATE_NOTES)
    messages = list(left_out)
    fixed = await message_tokens(counter, system) + await message_tokens(counter, request)
    sizes = [await message_tokens(counter, m) for m in messages]
    # Normally the left-out part fit the last prompt; if not, its oldest messages are left out
    # of this call too (their facts are kept all the same).
    while messages and fixed + sum(sizes) + limit > window.tokens - SAFETY_TOKENS:
        messages.pop(0)
        sizes.pop(0)
        while messages and isinstance(messages[0], ToolMessage):  # never a result alone
            messages.pop(0)
            sizes.pop(0)
    reply = await model.ainvoke(
        [system, *messages, request],
        {"tags": [NO_STREAM], "metadata": {"lakebase_memory": "summary"}},
        max_tokens=limit,
    )
    text = message_text(reply).strip() if isinstance(reply, AIMessage) else ""
    return text or context.notes


async def _cut(counter: TokenCounter, text: str, limit: int) -> str:
    """`text`, shortened from its end until it has at most `limit` tokens."""
    tokens = await counter.count(text)
    while tokens > limit and text:
        text = text[: max(0, int(len(text) * limit / tokens * 0.95))]
        tokens = await counter.count(text)
    return text
