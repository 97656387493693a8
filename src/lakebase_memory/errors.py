"""The project's exception families. Each message says what went wrong and what to do."""

from __future__ import annotations


def first_line(error: BaseException, text: str | None = None) -> str:
    """The first line of an error's message (or of `text`, a cleaned-up version of it), or
    the error's class name when it has none."""
    message = str(error) if text is None else text
    return (message.strip().splitlines() or [type(error).__name__])[0]


class LakebaseMemoryError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigurationError(LakebaseMemoryError):
    """The configuration is missing, contradictory or invalid; the app cannot start."""


class DatabaseUnavailableError(LakebaseMemoryError):
    """The memory database cannot be reached or refused the login."""


class EmbeddedDatabaseError(DatabaseUnavailableError):
    """The embedded PostgreSQL could not be initialised or started."""


class ModelError(LakebaseMemoryError):
    """The model backend failed to produce an answer."""


class SchemaSetupError(LakebaseMemoryError):
    """The app's tables could not be created or upgraded."""


class ModelUnavailableError(ModelError):
    """The model cannot answer now (its process died or is restarting): retry later."""
