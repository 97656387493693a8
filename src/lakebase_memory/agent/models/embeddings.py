"""Embedding models for the memory store's search by meaning, chosen by EMBEDDING_BACKEND.

`none` (the default) makes no vectors: the store searches by words (PostgreSQL full-text
search), offline and without downloads. `openai` and `databricks` call an embeddings endpoint
as the chat models do; `hash` is an offline stand-in whose vectors are hashed words: similar
wording scores high, meaning does not (for tests and demos).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

from langchain_core.embeddings import Embeddings

from lakebase_memory.config import Settings
from lakebase_memory.config.settings import EmbeddingBackend
from lakebase_memory.errors import ConfigurationError

DEFAULT_DIMS = {
    EmbeddingBackend.DATABRICKS: 1024,  # databricks-gte-large-en
    EmbeddingBackend.OPENAI: 1536,  # text-embedding-3-small
    EmbeddingBackend.HASH: 256,
}
DEFAULT_DATABRICKS_ENDPOINT = "databricks-gte-large-en"
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class EmbeddingModel:
    embeddings: Embeddings
    dims: int


class HashEmbeddings(Embeddings):
    """Each lowercase word adds ±1 to a dimension picked by its hash; the vector is then
    normalized. Deterministic, offline, and blind to meaning."""

    def __init__(self, dims: int = DEFAULT_DIMS[EmbeddingBackend.HASH]) -> None:
        self.dims = dims

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "big")
            vector[value % self.dims] += 1.0 if value >> 63 else -1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


def embedding_dims(settings: Settings) -> int | None:
    """The vectors' dimensions, or None when the store makes none."""
    if settings.embedding_backend is EmbeddingBackend.NONE:
        return None
    return settings.embedding_dims or DEFAULT_DIMS[settings.embedding_backend]


def build_embeddings(settings: Settings) -> EmbeddingModel | None:
    """The configured embedding model; raises ConfigurationError with the fix."""
    dims = embedding_dims(settings)
    if dims is None:
        return None
    backend = settings.embedding_backend
    if backend is EmbeddingBackend.HASH:
        return EmbeddingModel(HashEmbeddings(dims), dims)
    from langchain_openai import OpenAIEmbeddings

    if backend is EmbeddingBackend.OPENAI:
        if not settings.embedding_model:
            raise ConfigurationError(
                "EMBEDDING_BACKEND=openai needs EMBEDDING_MODEL (for example "
                "text-embedding-3-small) and OPENAI_API_KEY or OPENAI_BASE_URL."
            )
        embeddings = OpenAIEmbeddings(
            model=settings.embedding_model,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key or "not-needed",  # type: ignore[arg-type]
            # Token counting would download tiktoken's tables: servers other than OpenAI's
            # take text, and the store's values are short.
            check_embedding_ctx_length=False,
            max_retries=1,
        )
        return EmbeddingModel(embeddings, dims)
    from lakebase_memory.agent.models.remote import databricks_http_clients

    base_url, client, async_client = databricks_http_clients(settings, "EMBEDDING_BACKEND")
    embeddings = OpenAIEmbeddings(
        model=settings.embedding_model or DEFAULT_DATABRICKS_ENDPOINT,
        base_url=base_url,
        api_key="databricks",  # type: ignore[arg-type]  # replaced by the SDK's credentials
        http_client=client,
        http_async_client=async_client,
        check_embedding_ctx_length=False,
        max_retries=1,
    )
    return EmbeddingModel(embeddings, dims)
