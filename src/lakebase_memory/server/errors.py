"""One JSON error shape for every failure: {"error": {"code", "message", "details"?}}.

Handlers turn each exception family into its status; nothing answers with a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from lakebase_memory.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    LakebaseMemoryError,
    ModelError,
)
from lakebase_memory.memory.chat_messages import MessageNotFoundError
from lakebase_memory.memory.threads import InvalidCursorError, ThreadNotFoundError
from lakebase_memory.server.protocol import INPUT_ITEM_TAGS

logger = logging.getLogger(__name__)

DATABASE_HINT = (
    "Check that the database is running and reachable ({target}); `lakebase-memory config` "
    "shows the configuration in use."
)


class ApiError(Exception):
    """An error with its HTTP status and a message for the caller."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


KNOWN_ERRORS = (
    ApiError,
    ThreadNotFoundError,
    InvalidCursorError,
    MessageNotFoundError,
    psycopg.OperationalError,
    PoolTimeout,
    LakebaseMemoryError,
)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def api_error_for(error: BaseException, target: str) -> ApiError:
    """Map any exception to the ApiError a client should see."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ThreadNotFoundError):
        return ApiError(404, "thread_not_found", str(error))
    if isinstance(error, MessageNotFoundError):
        return ApiError(404, "message_not_found", str(error))
    if isinstance(error, InvalidCursorError):
        return ApiError(400, "invalid_cursor", str(error))
    if isinstance(error, (psycopg.OperationalError, PoolTimeout, DatabaseUnavailableError)):
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return ApiError(
            503,
            "database_unavailable",
            f"The memory database is not available: {cause}. {DATABASE_HINT.format(target=target)}",
        )
    if isinstance(error, ModelError):
        return ApiError(502, "model_error", str(error))
    if isinstance(error, ConfigurationError):
        return ApiError(500, "configuration_error", str(error))
    return ApiError(500, "internal_error", "Internal server error; the server log has the details.")


def describe_validation(error: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    details = []
    for problem in error.errors():
        location = ".".join(_field_path(problem.get("loc", ())))
        details.append({"field": location or "body", "problem": problem.get("msg", "")})
        if problem.get("type") == "json_invalid":
            return (
                400,
                f"The body is not valid JSON: {problem.get('ctx', {}).get('error', '')}",
                details,
            )
    summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details)
    return 422, f"Invalid request: {summary}", details


def target_of(request: Request) -> str:
    runtime = getattr(request.app.state, "runtime", None)
    return runtime.target.location if runtime is not None else "the configured database"


def _field_path(loc: tuple[Any, ...]) -> list[str]:
    # Drop the "body" root and the tags pydantic adds for the kind of an input item.
    return [
        str(part)
        for index, part in enumerate(loc)
        if part != "body" and not (part in INPUT_ITEM_TAGS and isinstance(loc[index - 1], int))
    ]


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, error: Exception) -> JSONResponse:
        api_error = api_error_for(error, target_of(request))
        if api_error.status >= 500:
            logger.error("%s %s failed: %s", request.method, request.url.path, error,
                         exc_info=api_error.code == "internal_error")  # fmt: skip
        return JSONResponse(
            error_body(api_error.code, api_error.message, api_error.details),
            status_code=api_error.status,
        )

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        status, message, details = describe_validation(error)
        return JSONResponse(error_body("invalid_request", message, details), status_code=status)

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        return JSONResponse(
            error_body(codes.get(error.status_code, "http_error"), str(error.detail)),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    # Known families are answered by the exception middleware; the catch-all `Exception`
    # handler runs in the outermost middleware, which also logs the traceback (unknown bugs).
    for family in KNOWN_ERRORS:
        app.add_exception_handler(family, on_api_error)
    app.add_exception_handler(Exception, on_api_error)
