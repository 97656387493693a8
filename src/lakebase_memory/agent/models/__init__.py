"""Model back-ends, chosen by MODEL_BACKEND."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel

from lakebase_memory.agent.context import ContextWindow, EstimatedTokens, TokenCounter
from lakebase_memory.config import ModelBackend, Settings

# A remote model's window is not known from here; most serving endpoints' are at least this.
REMOTE_CONTEXT_TOKENS = 128_000


@dataclass
class OpenModel:
    """A chat model with what the agent needs to fit its prompts: its window and a counter."""

    chat: BaseChatModel
    window: ContextWindow
    tokens: TokenCounter
    # Make the window's next move after a turn rather than in the next one: for a model on
    # this machine, whose time is free while the user reads (a remote model's is billed).
    prepare_ahead: bool = False


def context_tokens(settings: Settings) -> int:
    if settings.model_context_tokens is not None:
        return settings.model_context_tokens
    if settings.model_backend is ModelBackend.LOCAL:
        from lakebase_memory.agent.models.local import DEFAULT_CONTEXT_TOKENS

        return DEFAULT_CONTEXT_TOKENS
    return REMOTE_CONTEXT_TOKENS


def context_window(settings: Settings) -> ContextWindow:
    return ContextWindow(
        tokens=context_tokens(settings),
        output_tokens=settings.max_output_tokens,
        policy=settings.model_context_policy,
    )


def build_model(settings: Settings) -> BaseChatModel:
    """The chat model of a remote or echo backend; raises ConfigurationError with the fix.
    The local backend runs in a process of its own: `open_model` starts it."""
    if settings.model_backend is ModelBackend.ECHO:
        from lakebase_memory.agent.models.echo import EchoChatModel

        return EchoChatModel(delay_seconds=settings.echo_delay_seconds)
    if settings.model_backend is ModelBackend.OPENAI:
        from lakebase_memory.agent.models.remote import openai_model

        return openai_model(settings)
    if settings.model_backend is ModelBackend.DATABRICKS:
        from lakebase_memory.agent.models.remote import databricks_model

        return databricks_model(settings)
    raise ValueError("the local model is started by open_model()")


async def open_model(settings: Settings, chat: BaseChatModel | None = None) -> OpenModel:
    """The configured model (or `chat`, handed in), ready to answer."""
    window = context_window(settings)
    if chat is None and settings.model_backend is ModelBackend.LOCAL:
        from lakebase_memory.agent.models.local import start_local_model

        local = await start_local_model(settings, window.tokens)
        return OpenModel(local, window, local.tokens, prepare_ahead=True)
    if chat is None:
        import asyncio

        chat = await asyncio.to_thread(build_model, settings)
    counter = getattr(chat, "tokens", None) or EstimatedTokens()
    return OpenModel(chat, window, counter)


async def close_model(model: BaseChatModel) -> None:
    """Release what was opened for `model`: the local model's process, the HTTP clients made
    for a Databricks endpoint."""
    if "lakebase_memory.agent.models.local" in sys.modules:
        from lakebase_memory.agent.models.local import LocalChatModel

        if isinstance(model, LocalChatModel):
            await model.process.close()
            return
    if "langchain_openai" in sys.modules:  # otherwise no remote model was ever built
        from lakebase_memory.agent.models.remote import close_model_clients

        await close_model_clients(model)


__all__ = ["OpenModel", "build_model", "close_model", "context_window", "open_model"]
