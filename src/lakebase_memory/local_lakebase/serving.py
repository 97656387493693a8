"""Model serving in the local workspace: embedding endpoints, offline.

`POST /serving-endpoints/{name}/invocations` with `{"input": "text" | ["text", ...]}` answers
as a Databricks embedding endpoint does (OpenAI's embeddings shape: `data[i].embedding`,
`data[i].index`), which is what `WorkspaceClient.serving_endpoints.query(name, input=...)` and
databricks-langchain's `DatabricksEmbeddings` send and read. The vectors are the project's
`HashEmbeddings` (hashed words, normalized): deterministic, offline, similar wording scores
high. The endpoints are the workspace's pay-per-token embedding models, with their dimensions.
"""

from __future__ import annotations

from typing import Any

from lakebase_memory.agent.models.embeddings import HashEmbeddings

# The foundation-model embedding endpoints every workspace has, and their vectors' sizes.
EMBEDDING_ENDPOINTS: dict[str, int] = {
    "databricks-gte-large-en": 1024,
    "databricks-bge-large-en": 1024,
}
MAX_INPUTS = 150  # the pay-per-token endpoints' limit per request


class ServingError(Exception):
    """A request the endpoint refuses: `status`, Databricks' `error_code`, the message."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


def invoke(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The endpoint's answer to `body`; raises ServingError as the service would refuse."""
    dims = EMBEDDING_ENDPOINTS.get(name)
    if dims is None:
        raise ServingError(
            404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint with name '{name}' does not exist."
        )
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ServingError(
            400,
            "BAD_REQUEST",
            "Embedding endpoints take 'input': a string or a list of strings.",
        )
    if len(texts) > MAX_INPUTS:
        raise ServingError(
            400, "BAD_REQUEST", f"At most {MAX_INPUTS} inputs per request, got {len(texts)}."
        )
    vectors = HashEmbeddings(dims).embed_documents(texts)
    words = sum(len(text.split()) for text in texts)
    return {
        "object": "list",
        "model": name,
        "data": [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": words, "total_tokens": words},
    }
