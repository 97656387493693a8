"""What of a thread the model is sent: token counting, the window, the running summary."""

from lakebase_memory.agent.context.planner import ContextPlanner
from lakebase_memory.agent.context.summary import NO_STREAM, fold_into_summary, with_summary
from lakebase_memory.agent.context.tokens import (
    CachedTokens,
    EstimatedTokens,
    TokenCounter,
    message_tokens,
)
from lakebase_memory.agent.context.window import (
    ContextPolicy,
    ContextState,
    ContextWindow,
    new_start,
)

__all__ = [
    "NO_STREAM",
    "CachedTokens",
    "ContextPlanner",
    "ContextPolicy",
    "ContextState",
    "ContextWindow",
    "EstimatedTokens",
    "TokenCounter",
    "fold_into_summary",
    "message_tokens",
    "new_start",
    "with_summary",
]
