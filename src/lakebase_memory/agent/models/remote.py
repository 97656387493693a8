"""OpenAI-compatible back-ends: any endpoint, or a Databricks model serving endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from lakebase_memory.config import Settings
from lakebase_memory.config.databricks import sdk_config
from lakebase_memory.errors import ConfigurationError


def openai_model(settings: Settings) -> BaseChatModel:
    if not settings.openai_model:
        raise ConfigurationError(
            "MODEL_BACKEND=openai needs OPENAI_MODEL (the model name), and OPENAI_BASE_URL "
            "for a server other than OpenAI's."
        )
    if not settings.openai_api_key and not settings.openai_base_url:
        raise ConfigurationError(
            "MODEL_BACKEND=openai needs OPENAI_API_KEY, or OPENAI_BASE_URL for a server that "
            "takes no key."
        )
    return ChatOpenAI(
        model=settings.openai_model,
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key or "not-needed",  # type: ignore[arg-type]
        max_completion_tokens=settings.max_output_tokens,
        streaming=True,
        max_retries=1,
    )


class DatabricksAuth(httpx.Auth):
    """Adds the SDK's current credentials to each request, so OAuth tokens stay fresh."""

    def __init__(self, config: Any) -> None:
        self._config = config

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self._config.authenticate())
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        # Renewing an OAuth token is a blocking HTTP call inside the SDK: in a worker thread,
        # so the server's other requests go on meanwhile.
        request.headers.update(await asyncio.to_thread(self._config.authenticate))
        yield request


def databricks_http_clients(
    settings: Settings, needed_by: str = "MODEL_BACKEND=databricks"
) -> tuple[str, httpx.Client, httpx.AsyncClient]:
    """The serving endpoints' base URL and HTTP clients signed with the SDK's credentials."""
    try:
        config = sdk_config(settings)
    except ValueError as error:
        raise ConfigurationError(
            f"Databricks authentication is not configured ({error}), and {needed_by} needs "
            "it. Set DATABRICKS_HOST with DATABRICKS_TOKEN, or DATABRICKS_CONFIG_PROFILE, or run "
            "`databricks auth login`."
        ) from error
    auth = DatabricksAuth(config)
    base_url = f"{config.host.rstrip('/')}/serving-endpoints"
    return base_url, httpx.Client(auth=auth), httpx.AsyncClient(auth=auth)


def databricks_model(settings: Settings) -> BaseChatModel:
    if not settings.llm_endpoint_name:
        raise ConfigurationError(
            "MODEL_BACKEND=databricks needs LLM_ENDPOINT_NAME, the name of a model serving "
            "endpoint in your workspace (for example databricks-claude-sonnet-4)."
        )
    base_url, client, async_client = databricks_http_clients(settings)
    return ChatOpenAI(
        model=settings.llm_endpoint_name,
        base_url=base_url,
        api_key="databricks",  # type: ignore[arg-type]  # replaced by DatabricksAuth
        http_client=client,
        http_async_client=async_client,
        max_completion_tokens=settings.max_output_tokens,
        streaming=True,
        max_retries=1,
    )


async def close_model_clients(model: BaseChatModel) -> None:
    """Close the HTTP clients `databricks_model` made for `model` (others are shared)."""
    if not isinstance(model, ChatOpenAI):
        return
    clients = (model.http_client, model.http_async_client)
    if not any(isinstance(getattr(c, "auth", None), DatabricksAuth) for c in clients):
        return  # langchain-openai's own clients are cached for the process: not ours to close
    if isinstance(model.http_client, httpx.Client):
        model.http_client.close()
    if isinstance(model.http_async_client, httpx.AsyncClient):
        await model.http_async_client.aclose()
