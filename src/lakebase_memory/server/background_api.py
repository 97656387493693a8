"""Background responses over HTTP: start one, read it, replay and follow its stream, cancel it.

`POST /responses` (or `/invocations`) with `"background": true` answers at once with the
stored response (`status` `queued`), or with `"stream": true` too, with its stream, read from
the stored events: a client that drops it does not affect the turn, and resumes with
`GET /responses/{id}?stream=true&starting_after=N`. Any process of the app serves any
response; another user's id answers 404 as an unknown one does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from lakebase_memory.observability import metrics
from lakebase_memory.server.background import BackgroundResponses, ResponseRow, follow
from lakebase_memory.server.background.rows import TERMINAL_EVENTS
from lakebase_memory.server.errors import ApiError, api_error_for
from lakebase_memory.server.events import error_frame, sse
from lakebase_memory.server.identity import caller_id
from lakebase_memory.server.runtime import AppRuntime
from lakebase_memory.server.turns import PreparedTurn

logger = logging.getLogger(__name__)
router = APIRouter(tags=["responses"])

CANCEL_WAIT_SECONDS = 10.0  # how long a cancel waits for the turn to stop before answering
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def responses_of(runtime: AppRuntime) -> BackgroundResponses:
    assert runtime.responses is not None, "the runtime opens its background responses"
    return runtime.responses


async def start_background(
    runtime: AppRuntime, turn: PreparedTurn, user: str, *, stream: bool
) -> Any:
    responses = responses_of(runtime)
    row = await responses.runner.start(turn, user)
    if stream:
        return _stream(runtime, row, after=-1)
    return JSONResponse(row.to_json())


def _not_found(response_id: str) -> ApiError:
    return ApiError(
        404,
        "response_not_found",
        f"No background response '{response_id}' for you. Ids come from POST /responses with "
        '"background": true (a response without it is not stored); finished ones are kept '
        "for RESPONSE_RETENTION_HOURS.",
    )


async def _row(runtime: AppRuntime, request: Request, response_id: str) -> ResponseRow:
    user = caller_id(request, runtime.settings)
    row = await responses_of(runtime).rows.get(response_id, user)
    if row is None:
        raise _not_found(response_id)
    return row


@router.get("/responses/{response_id}", summary="A background response, or its stream")
async def get_response(
    request: Request,
    response_id: str,
    stream: bool = Query(False, description="Replay the response's events (SSE), then follow"),
    starting_after: int | None = Query(
        None, ge=-1, description="With stream: only events with a larger sequence_number"
    ),
) -> Any:
    runtime: AppRuntime = request.app.state.runtime
    if starting_after is not None and not stream:
        raise ApiError(
            400,
            "stream_required",
            "starting_after selects where a replayed stream starts: add stream=true, or drop "
            "starting_after to read the response as JSON.",
        )
    row = await _row(runtime, request, response_id)
    if stream:
        return _stream(runtime, row, after=-1 if starting_after is None else starting_after)
    return row.to_json()


@router.post("/responses/{response_id}/cancel", summary="Stop a background response")
async def cancel_response(request: Request, response_id: str) -> Any:
    runtime: AppRuntime = request.app.state.runtime
    row = await _row(runtime, request, response_id)
    if row.status in ("completed", "failed"):
        raise _finished(row)
    if row.status != "cancelled":
        await responses_of(runtime).runner.cancel(row, CANCEL_WAIT_SECONDS)
        row = await _row(runtime, request, response_id)
        if row.status in ("completed", "failed"):  # it ended before the cancel reached it
            raise _finished(row)
    return row.to_json()


def _finished(row: ResponseRow) -> ApiError:
    return ApiError(
        409,
        "response_finished",
        f"Background response '{row.id}' is already {row.status}: there is nothing to cancel. "
        f"GET /responses/{row.id} shows its result.",
        details={"status": row.status},
    )


def _stream(runtime: AppRuntime, row: ResponseRow, after: int) -> StreamingResponse:
    return StreamingResponse(
        _sse(runtime, row, after), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _sse(runtime: AppRuntime, row: ResponseRow, after: int) -> AsyncIterator[str]:
    responses = responses_of(runtime)
    poll = runtime.settings.response_poll_seconds
    ended = False
    try:
        async for event in follow(responses.rows, responses.wakeups, row.id, row.user_id,
                                  after, poll):  # fmt: skip
            ended = event["type"] in TERMINAL_EVENTS
            yield sse(event)
        if not ended and await responses.rows.get(row.id, row.user_id) is None:
            yield sse(error_frame(_not_found(row.id).message, "response_not_found"))
    except Exception as error:  # the database failed mid-stream: say so, as a direct stream
        api_error = await api_error_for(error, runtime.target)
        metrics.count_error(api_error.code, stream=True)
        logger.error("stream of background response %s failed: %s", row.id, error)
        yield sse(error_frame(api_error.message, api_error.code, row.thread_id))
    yield sse("[DONE]")
