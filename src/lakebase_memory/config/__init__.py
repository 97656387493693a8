"""Configuration: one settings object read from the environment and dotenv files."""

from lakebase_memory.config.settings import (
    ENV_FILES,
    ContextPolicy,
    ModelBackend,
    Settings,
    load_settings,
)

__all__ = ["ENV_FILES", "ContextPolicy", "ModelBackend", "Settings", "load_settings"]
