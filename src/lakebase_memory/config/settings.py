"""The one settings object, read from the process environment, `.env.local` and `.env`.

Precedence (highest first): process environment, `.env.local`, `.env`, defaults.
Every field is documented in `.env.example`; a test keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Later files win in pydantic-settings, so `.env.local` overrides `.env`.
ENV_FILES = (".env", ".env.local")


class ModelBackend(StrEnum):
    LOCAL = "local"
    OPENAI = "openai"
    DATABRICKS = "databricks"
    ECHO = "echo"


class EmbeddingBackend(StrEnum):
    """What turns the long-term memory store's items into vectors (`agent.models.embeddings`)."""

    NONE = "none"  # no vectors: the store searches by PostgreSQL full-text search only
    OPENAI = "openai"  # an OpenAI-compatible embeddings endpoint (OPENAI_BASE_URL/API_KEY)
    DATABRICKS = "databricks"  # a Databricks model serving endpoint
    HASH = "hash"  # offline and deterministic: hashed words (tests, demos; no meaning)


class ContextPolicy(StrEnum):
    """What the model is sent of a thread longer than its window (`agent.context`)."""

    SUMMARIZE = "summarize"  # the newest messages and a running summary of the rest
    TRIM = "trim"  # the newest messages only
    OFF = "off"  # the whole thread, always


class Settings(BaseSettings):
    """Everything the app can be configured with. Field names are the environment names."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILES,
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    # --- model -----------------------------------------------------------------------------
    model_backend: ModelBackend = Field(
        ModelBackend.LOCAL,
        description="Which model answers: local | openai | databricks | echo.",
    )
    system_prompt: str = Field(
        # Short and plain: the default local model has 135 M parameters.
        "You are a helpful assistant. Use the conversation history to answer.",
        description="System prompt placed before every conversation.",
    )
    openai_base_url: str | None = Field(None, description="OpenAI-compatible API base URL.")
    openai_api_key: str | None = Field(None, description="API key for OPENAI_BASE_URL.")
    openai_model: str | None = Field(None, description="Model name for the openai backend.")
    llm_endpoint_name: str | None = Field(
        None, description="Databricks model serving endpoint for the databricks backend."
    )
    local_model_path: Path | None = Field(
        None, description="GGUF file for the local backend (default: the bundled SmolLM2)."
    )
    local_model_threads: int | None = Field(
        None, ge=1, description="CPU threads of the local model's process (default: all)."
    )
    max_output_tokens: int = Field(512, ge=1, description="Upper bound on tokens per answer.")
    echo_delay_seconds: float = Field(
        0.0, ge=0, le=10, description="Echo back-end: pause before each streamed word."
    )
    model_context_tokens: int | None = Field(
        None,
        ge=256,
        description="The model's context window (default: 4096 local, 128000 otherwise).",
    )
    model_context_policy: ContextPolicy = Field(
        ContextPolicy.SUMMARIZE,
        description="A thread longer than the window: summarize | trim | off.",
    )

    # --- tools and long-term memory ---------------------------------------------------------
    agent_tools: bool | None = Field(
        None,
        description="Give the agent its tools (memory, MCP): default on, off for the local model.",
    )
    embedding_backend: EmbeddingBackend = Field(
        EmbeddingBackend.NONE,
        description="Vectors for memory search: none (full-text) | openai | databricks | hash.",
    )
    embedding_model: str | None = Field(
        None,
        description="Embedding model (openai) or serving endpoint (databricks; default "
        "databricks-gte-large-en).",
    )
    embedding_dims: int | None = Field(
        None, ge=1, le=16_000, description="Dimensions of the embeddings (default per backend)."
    )
    memory_item_ttl_minutes: float | None = Field(
        None,
        gt=0,
        description="Forget a memory not read or written for this long (default: never).",
    )
    mcp_servers: str | None = Field(
        None,
        description="MCP tool servers, as JSON: {name: {url, transport[, headers]}} "
        "(needs the `mcp` extra).",
    )

    # --- database --------------------------------------------------------------------------
    database_url: str | None = Field(None, description="PostgreSQL connection URL.")
    pghost: str | None = Field(None, description="libpq host (standard PG* variables).")
    pgport: str | None = None
    pgdatabase: str | None = None
    pguser: str | None = None
    pgpassword: str | None = None
    pgsslmode: str | None = None
    pgappname: str | None = None
    lakebase_memory_data_dir: Path = Field(
        Path(".lakebase-memory"),
        description="Where the embedded PostgreSQL keeps its data (git-ignored).",
    )
    checkpoint_schema: str = Field(
        "public", min_length=1, description="Schema of the LangGraph checkpoint tables."
    )
    db_pool_min_size: int = Field(1, ge=0)
    db_pool_max_size: int = Field(10, ge=1)
    db_pool_timeout: float = Field(
        10.0, gt=0, description="Seconds a request waits for a database connection."
    )
    db_pool_max_lifetime: float = Field(
        1800.0, gt=0, description="Seconds before a pooled connection is replaced."
    )
    db_pool_max_idle: float = Field(300.0, gt=0)
    db_connect_timeout: int = Field(10, ge=1, description="Seconds to wait for a login.")
    db_max_connections: int | None = Field(
        None,
        ge=1,
        description="Connections all the app's processes may hold together (default: what the "
        "server allows, less its reserved slots and a few for maintenance).",
    )

    # --- Lakebase (Databricks) ---------------------------------------------------------------
    lakebase_instance_name: str | None = None
    lakebase_autoscaling_endpoint: str | None = None
    lakebase_autoscaling_project: str | None = None
    lakebase_autoscaling_branch: str | None = None

    # --- Databricks authentication (the SDK's own names; also read from the dotenv files) ----
    databricks_host: str | None = None
    databricks_token: str | None = None
    databricks_config_profile: str | None = None
    databricks_client_id: str | None = None
    databricks_client_secret: str | None = None
    databricks_auth_type: str | None = None

    # --- Databricks Apps runtime -----------------------------------------------------------
    databricks_app_name: str | None = None
    databricks_app_port: int | None = None
    trust_forwarded_identity: bool | None = Field(
        None,
        description="Take the user from X-Forwarded-Email/User. Default: only on Databricks Apps.",
    )
    local_user: str = Field("local-user", min_length=1, description="The user when not trusted.")

    # --- MLflow tracing (observability.tracing; needs the `tracing` extra) -------------------
    mlflow_tracing: bool = Field(
        False, description="Send one MLflow trace per turn (model and tool spans)."
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        description="Where traces go: databricks, databricks://<profile> or an MLflow server's "
        "URL (default: databricks when Databricks authentication is configured).",
    )
    mlflow_experiment_name: str | None = Field(
        None,
        description="Experiment of the traces, by name (default lakebase-memory; on Databricks "
        "a workspace path such as /Users/<you>/lakebase-memory).",
    )
    mlflow_experiment_id: str | None = Field(
        None, description="Experiment of the traces, by id (instead of a name)."
    )

    # --- server ----------------------------------------------------------------------------
    app_workers: int = Field(
        1, ge=1, le=64, description="Server processes sharing the port (start-app --workers)."
    )
    max_request_bytes: int = Field(1_000_000, ge=1024, description="Largest accepted body.")
    turn_lease_seconds: float = Field(
        60.0, ge=1, description="Lease of a running turn on its thread (renewed while it runs)."
    )
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at GET /metrics.")

    # --- memory lifecycle (retention) --------------------------------------------------------
    memory_retention_days: float | None = Field(
        None, gt=0, description="Delete threads inactive for longer than this many days."
    )
    memory_max_threads_per_user: int | None = Field(
        None, ge=1, description="Keep each user's N most recently active threads, delete the rest."
    )
    memory_retention_interval_seconds: float = Field(
        3600.0, gt=0, description="Seconds between retention passes of the server."
    )
    memory_retention_batch_size: int = Field(
        500, ge=1, description="Threads deleted per transaction by retention and erasure."
    )

    # --- background responses (issue 15) ------------------------------------------------------
    response_lease_seconds: float = Field(
        30.0, ge=0.5, description="Lease of a running background response (heartbeated)."
    )
    response_sweep_seconds: float = Field(
        10.0, gt=0, description="Seconds between sweeps for background responses whose owner died."
    )
    response_poll_seconds: float = Field(
        0.2, gt=0, le=5, description="How often a stream of another process's response polls."
    )
    response_retention_hours: float = Field(
        24.0, gt=0, description="Delete finished background responses after this many hours."
    )

    @field_validator(
        "openai_base_url",
        "openai_api_key",
        "openai_model",
        "llm_endpoint_name",
        "embedding_model",
        "embedding_dims",
        "memory_item_ttl_minutes",
        "mcp_servers",
        "agent_tools",
        "database_url",
        "pghost",
        "lakebase_instance_name",
        "lakebase_autoscaling_endpoint",
        "lakebase_autoscaling_project",
        "lakebase_autoscaling_branch",
        "databricks_app_name",
        "databricks_host",
        "databricks_token",
        "databricks_config_profile",
        "databricks_client_id",
        "databricks_client_secret",
        "databricks_auth_type",
        "memory_retention_days",
        "memory_max_threads_per_user",
        "mlflow_tracking_uri",
        "mlflow_experiment_name",
        "mlflow_experiment_id",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `FOO=` in a dotenv file means "not configured", not "configured as empty".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _window_holds_an_answer(self) -> Settings:
        tokens = self.model_context_tokens
        if tokens is not None and self.max_output_tokens > tokens // 2:
            raise ValueError(
                f"MAX_OUTPUT_TOKENS ({self.max_output_tokens}) must be at most half of "
                f"MODEL_CONTEXT_TOKENS ({tokens}): the rest holds the conversation."
            )
        return self

    @property
    def tools_enabled(self) -> bool:
        """Tools by default, but not for the local model: 135 M parameters do not call tools
        reliably (set AGENT_TOOLS=true to try)."""
        if self.agent_tools is None:
            return self.model_backend is not ModelBackend.LOCAL
        return self.agent_tools

    @property
    def on_databricks_app(self) -> bool:
        return self.databricks_app_name is not None

    @property
    def trusts_forwarded_identity(self) -> bool:
        if self.trust_forwarded_identity is None:
            return self.on_databricks_app
        return self.trust_forwarded_identity

    @property
    def lakebase_configured(self) -> bool:
        return any(
            (
                self.lakebase_instance_name,
                self.lakebase_autoscaling_endpoint,
                self.lakebase_autoscaling_project,
                self.lakebase_autoscaling_branch,
            )
        )


def load_settings(**overrides: object) -> Settings:
    """Read the settings; keyword overrides win over every source (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
