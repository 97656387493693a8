"""Model back-ends, chosen by MODEL_BACKEND."""

from __future__ import annotations

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


__all__ = ["build_model"]
