"""The drop-in stores' search by meaning: databricks-langchain's `embedding_endpoint=`,
`embedding_dims=`, `embedding_fields=` and `embeddings=`, as a LangGraph index config.

`ServingEndpointEmbeddings` calls the endpoint as databricks-langchain's `DatabricksEmbeddings`
does (`POST /serving-endpoints/{name}/invocations` with `{"input": [...]}`, 20 texts a
request), through the Databricks SDK client the store connects with, so the database and the
embeddings use one identity and one authentication.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from langchain_core.embeddings import Embeddings
from langgraph.store.postgres.base import PostgresIndexConfig

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

BATCH_SIZE = 20  # texts per request, as databricks-langchain sends them


class ServingEndpointEmbeddings(Embeddings):
    """Vectors from a Databricks model serving endpoint (e.g. `databricks-gte-large-en`).

    `workspace` supplies the SDK client when a call is made (the store's, resolved when its
    pool opens). Async calls run the SDK's blocking request in a worker thread (LangChain's
    default for `aembed_documents`).
    """

    def __init__(
        self,
        endpoint: str,
        workspace: Callable[[], WorkspaceClient],
        *,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        if not endpoint.strip():
            raise ValueError("'embedding_endpoint' cannot be empty.")
        self.endpoint = endpoint
        self._workspace = workspace
        self.batch_size = batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        from databricks.sdk.errors import NotFound

        client = self._workspace()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            try:
                response = client.serving_endpoints.query(name=self.endpoint, input=batch)
            except NotFound as error:
                raise LookupError(
                    f"No model serving endpoint '{self.endpoint}' in {client.config.host} "
                    f"({error}). Check the name (`databricks serving-endpoints list`) and that "
                    "it is an embedding endpoint."
                ) from error
            data = sorted(response.data or [], key=lambda item: item.index or 0)
            if len(data) != len(batch) or any(item.embedding is None for item in data):
                raise ValueError(
                    f"Endpoint '{self.endpoint}' answered {len(data)} embeddings for "
                    f"{len(batch)} texts: is it an embedding endpoint?"
                )
            vectors += [[float(v) for v in item.embedding or ()] for item in data]
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def index_config(
    workspace: Callable[[], WorkspaceClient],
    *,
    embedding_endpoint: str | None,
    embedding_dims: int | None,
    embedding_fields: list[str] | None,
    embeddings: Embeddings | None,
) -> PostgresIndexConfig | None:
    """The store's index config, or None (then it searches by words only).

    databricks-langchain's rules: `embeddings` wins over `embedding_endpoint` (with a
    warning); either needs `embedding_dims`; fields default to the whole value (`["$"]`).
    """
    if embeddings is not None:
        if embedding_endpoint is not None:
            warnings.warn(
                "Both 'embeddings' and 'embedding_endpoint' were specified. "
                "Using the provided 'embeddings' instance.",
                UserWarning,
                stacklevel=3,
            )
        if embedding_dims is None:
            raise ValueError("embedding_dims is required when providing an embeddings instance")
    elif embedding_endpoint is not None:
        if embedding_dims is None:
            raise ValueError("embedding_dims is required when embedding_endpoint is specified")
        embeddings = ServingEndpointEmbeddings(embedding_endpoint, workspace)
    else:
        return None
    if embedding_dims <= 0:
        raise ValueError(f"embedding_dims must be a positive number, got {embedding_dims}.")
    return {"dims": embedding_dims, "embed": embeddings, "fields": embedding_fields or ["$"]}
