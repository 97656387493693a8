"""One JSON error shape for every failure: {"error": {"code", "message", "details"?}}.

Handlers turn each exception family into its status; nothing answers with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from lakebase_memory.database.pool import check_login
from lakebase_memory.database.targets import DatabaseTarget
from lakebase_memory.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    LakebaseMemoryError,
    ModelError,
    ModelUnavailableError,
    first_line,
)
from lakebase_memory.memory.chat_messages import MessageNotFoundError
from lakebase_memory.memory.saver import StaleTurnError, ThreadBusyError
from lakebase_memory.memory.threads import (
    InvalidCursorError,
    ThreadConflictError,
    ThreadNotFoundError,
)
from lakebase_memory.observability import metrics
from lakebase_memory.server.protocol import INPUT_ITEM_TAGS, InvalidThreadIdError

logger = logging.getLogger(__name__)


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
    InvalidThreadIdError,
    ThreadConflictError,
    psycopg.DataError,
    ThreadNotFoundError,
    InvalidCursorError,
    MessageNotFoundError,
    ThreadBusyError,
    StaleTurnError,
    psycopg.OperationalError,
    PoolTimeout,
    LakebaseMemoryError,
)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


async def api_error_for(error: BaseException, target: DatabaseTarget | None) -> ApiError:
    """Map any exception to the ApiError a client should see.

    A pool timeout hides why no connection could be made, so one direct login is tried to
    report the real cause (database down, credential refused, role missing).
    """
    if isinstance(error, PoolTimeout) and target is not None:
        error = await _login_diagnosis(target) or error
    api_error = _api_error_for(error, target)
    if api_error.code == "database_unavailable":
        api_error = ApiError(
            api_error.status, api_error.code, without_address(api_error.message, target)
        )
    return api_error


# libpq's words for where it tried: a socket path, or a host with its address and port.
_LIBPQ_WHERE = re.compile(
    r'connection to server (on socket "[^"]*"|at "[^"]*"( \([^)]*\))?, port \d+) failed: '
)


def without_address(message: str, target: DatabaseTarget | None) -> str:
    """`message` as a client may read it: no connection string, host or socket path. The
    server's log has them (with the original error) for whoever runs it."""
    message = _LIBPQ_WHERE.sub("", message)
    if target is not None and target.location:
        message = message.replace(target.location, "the address is in the server's log")
    return message


# A pool that times out under load would otherwise get one more login per failed request:
# one diagnosis at a time per target, its answer reused for this long.
DIAGNOSIS_SECONDS = 30.0


async def _login_diagnosis(target: DatabaseTarget) -> BaseException | None:
    """Why a login fails now, or None when it works (the pool is merely busy)."""
    now = time.monotonic()
    recent = target.diagnosis
    if recent is None or now - recent[0] > DIAGNOSIS_SECONDS:
        recent = target.diagnosis = (now, asyncio.ensure_future(_try_login(target)))
    return await asyncio.shield(recent[1])


async def _try_login(target: DatabaseTarget) -> BaseException | None:
    try:
        await asyncio.wait_for(check_login(target), timeout=10)
    except (DatabaseUnavailableError, TimeoutError) as cause:
        return cause
    except Exception:  # keep the timeout as the explanation
        logger.debug("diagnosing a pool timeout failed", exc_info=True)
    return None


def _api_error_for(error: BaseException, target: DatabaseTarget | None) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ThreadNotFoundError):
        return ApiError(404, "thread_not_found", str(error))
    if isinstance(error, InvalidThreadIdError):
        return ApiError(422, "invalid_thread_id", str(error))
    if isinstance(error, ThreadConflictError):
        return ApiError(409, "thread_conflict", str(error))
    if isinstance(error, ThreadBusyError):
        return ApiError(409, "thread_busy", str(error))
    if isinstance(error, StaleTurnError):
        return ApiError(409, "turn_discarded", str(error))
    if isinstance(error, (psycopg.DataError, psycopg.errors.ProgramLimitExceeded)):
        # A value the database cannot store (NUL byte, an index row too large): the input's
        # fault, not an outage.
        return ApiError(422, "invalid_value", f"The database refused a value: {first_line(error)}")
    if isinstance(error, MessageNotFoundError):
        return ApiError(404, "message_not_found", str(error))
    if isinstance(error, InvalidCursorError):
        return ApiError(400, "invalid_cursor", str(error))
    if isinstance(error, DatabaseUnavailableError):
        return ApiError(503, "database_unavailable", str(error))
    if isinstance(error, (psycopg.OperationalError, PoolTimeout, TimeoutError)):
        message = (
            target.explain(error) if target else f"The memory database is not available: {error}"
        )
        return ApiError(503, "database_unavailable", message)
    if isinstance(error, ModelUnavailableError):
        return ApiError(503, "model_unavailable", str(error))
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


def target_of(request: Request) -> DatabaseTarget | None:
    runtime = getattr(request.app.state, "runtime", None)
    return runtime.target if runtime is not None else None


def _field_path(loc: tuple[Any, ...]) -> list[str]:
    # Drop the "body" root and the tags pydantic adds for the kind of an input item.
    return [
        str(part)
        for index, part in enumerate(loc)
        if part != "body" and not (part in INPUT_ITEM_TAGS and isinstance(loc[index - 1], int))
    ]


UNPARSABLE_BODY = "There was an error parsing the body"


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, error: Exception) -> JSONResponse:
        api_error = await api_error_for(error, target_of(request))
        metrics.count_error(api_error.code)
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
        metrics.count_error("invalid_request")
        return JSONResponse(error_body("invalid_request", message, details), status_code=status)

    async def on_http(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        codes = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
                 413: "request_too_large"}  # fmt: skip
        code = codes.get(error.status_code, "http_error")
        metrics.count_error(code)
        message = str(error.detail)
        if message == UNPARSABLE_BODY:  # FastAPI's words for a body json.loads gave up on
            message = (
                "The request body could not be read as JSON (it is nested too deeply, or is "
                "not JSON): send a JSON object such as "
                '{"input": [{"role": "user", "content": "..."}]}.'
            )
        return JSONResponse(
            error_body(code, message),
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
