"""Which of a thread's messages the model is sent, so that the prompt fits its window.

The thread keeps every message; the model gets the system prompt, a running summary of what
was left out (policy `summarize`) and the newest messages. When those outgrow the window the
start moves forward to a user message, far enough that the next turns fit without moving it
again (the kept part drops to half of its room): a summary is made once per move, not at every
turn, and a model that caches the prompt's prefix (llama.cpp) reuses it between moves.
A tool call and its results are never separated: the start is never a tool result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage

from lakebase_memory.config.settings import ContextPolicy

SAFETY_TOKENS = 32  # what token counting may miss: the template's start, the answer's opening
KEEP_AFTER_MOVE = 0.5  # the share of its room the kept part has after the start moved
SUMMARY_SHARE = 0.2  # of the prompt's budget, at most this much is summary
SUMMARY_MAX_TOKENS = 512


@dataclass(frozen=True)
class ContextWindow:
    tokens: int  # the model's context window
    output_tokens: int  # reserved for the answer
    policy: ContextPolicy = ContextPolicy.SUMMARIZE

    @property
    def prompt_budget(self) -> int:
        return self.tokens - self.output_tokens - SAFETY_TOKENS

    @property
    def summary_tokens(self) -> int:
        """The longest summary kept (0 unless the policy summarizes)."""
        if self.policy is not ContextPolicy.SUMMARIZE:
            return 0
        return min(SUMMARY_MAX_TOKENS, int(self.prompt_budget * SUMMARY_SHARE))

    def room(self, system_tokens: int) -> int:
        """Tokens the conversation's messages may take beside the system prompt and summary.
        Also the largest single message a turn accepts."""
        return self.prompt_budget - system_tokens - self.summary_tokens


@dataclass(frozen=True)
class ContextState:
    """What the thread's state keeps between turns (channel `context`)."""

    start_id: str | None = None  # the first message sent; the ones before it are left out
    left_out: int = 0  # how many messages are left out (the index of start_id)
    # The summary of the left-out messages (policy summarize; see `agent.context.summary`):
    notes: str = ""  # written by the model
    facts: tuple[str, ...] = ()  # the user's sentences with specifics, verbatim

    @classmethod
    def load(cls, value: object) -> ContextState:
        if not isinstance(value, dict):
            return cls()
        return cls(
            start_id=value.get("start_id"),
            left_out=int(value.get("left_out") or 0),
            notes=str(value.get("notes") or ""),
            facts=tuple(str(f) for f in value.get("facts") or ()),
        )

    def dump(self) -> dict[str, object]:
        return {"start_id": self.start_id, "left_out": self.left_out, "notes": self.notes,
                "facts": list(self.facts)}  # fmt: skip

    @property
    def summarized(self) -> bool:
        return bool(self.notes or self.facts)

    def start_in(self, messages: Sequence[BaseMessage]) -> int | None:
        """Index of the first message sent, or None when the thread no longer has it where it
        was (its history was rewritten): then the state describes another history."""
        if self.start_id is None:
            return 0
        index = self.left_out
        if index < len(messages) and messages[index].id == self.start_id:
            return index
        return None


def can_start_at(messages: Sequence[BaseMessage], index: int) -> bool:
    return not isinstance(messages[index], ToolMessage)


def new_start(sizes: Sequence[int], messages: Sequence[BaseMessage], start: int, room: int) -> int:
    """Where the kept messages begin after a move: the first user message from which the rest
    takes at most half of `room`; failing that, the first possible start from which the rest
    fits at all; failing that, the last possible start (the newest turn alone is too large:
    the model's answer says so)."""
    suffix = [0] * (len(sizes) + 1)
    for index in range(len(sizes) - 1, -1, -1):
        suffix[index] = suffix[index + 1] + sizes[index]
    target = int(room * KEEP_AFTER_MOVE)
    candidates = [i for i in range(start, len(messages)) if can_start_at(messages, i)]
    for limit, humans_only in ((target, True), (room, True), (room, False)):
        for index in candidates:
            if (not humans_only or isinstance(messages[index], HumanMessage)) and suffix[
                index
            ] <= limit:
                return index
    return candidates[-1] if candidates else len(messages) - 1
