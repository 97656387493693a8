"""Model back-ends, chosen by MODEL_BACKEND."""

from __future__ import annotations

import sys

from langchain_core.language_models import BaseChatModel

from lakebase_memory.config import ModelBackend, Settings


def build_model(settings: Settings) -> BaseChatModel:
    """The chat model for the configured backend; raises ConfigurationError with the fix."""
    if settings.model_backend is ModelBackend.ECHO:
        from lakebase_memory.agent.models.echo import EchoChatModel

        return EchoChatModel()
    if settings.model_backend is ModelBackend.OPENAI:
        from lakebase_memory.agent.models.remote import openai_model

        return openai_model(settings)
    if settings.model_backend is ModelBackend.DATABRICKS:
        from lakebase_memory.agent.models.remote import databricks_model

        return databricks_model(settings)
    from lakebase_memory.agent.models.local import LocalChatModel, bundled_model_path

    path = settings.local_model_path or bundled_model_path()
    model = LocalChatModel(model_path=str(path), max_tokens=settings.max_output_tokens)
    model.load()
    return model


async def close_model(model: BaseChatModel) -> None:
    """Release what `build_model` opened for `model`: the HTTP clients it made."""
    if "langchain_openai" in sys.modules:  # otherwise no remote model was ever built
        from lakebase_memory.agent.models.remote import close_model_clients

        await close_model_clients(model)


__all__ = ["build_model", "close_model"]
