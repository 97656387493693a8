"""POST /invocations and POST /responses (same body; `stream` selects SSE)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from lakebase_memory.observability import metrics
from lakebase_memory.server import background_api
from lakebase_memory.server.errors import api_error_for
from lakebase_memory.server.events import error_frame, sse
from lakebase_memory.server.identity import caller_id
from lakebase_memory.server.protocol import ResponsesRequest
from lakebase_memory.server.runtime import AppRuntime
from lakebase_memory.server.turns import PreparedTurn, prepare_turn, start_turn

logger = logging.getLogger(__name__)
router = APIRouter()


def runtime_of(request: Request) -> AppRuntime:
    runtime: AppRuntime = request.app.state.runtime
    return runtime


async def _respond(request: Request, body: ResponsesRequest) -> Any:
    runtime = runtime_of(request)
    user = caller_id(request, runtime.settings)
    turn = await prepare_turn(runtime, body, user)
    if body.background:  # validated and leased as any turn; then it runs without the request
        return await background_api.start_background(runtime, turn, user, stream=body.stream)
    events = start_turn(runtime, turn)
    if body.stream:
        return StreamingResponse(
            _sse(runtime, turn, events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    final: dict[str, Any] = {}
    async for event in events:
        if event["type"] == "response.completed":
            final = event["response"]
    return JSONResponse(final)


async def _sse(
    runtime: AppRuntime, turn: PreparedTurn, events: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[str]:
    try:
        async for event in events:
            yield sse(event)
    except Exception as error:
        api_error = await api_error_for(error, runtime.target)
        metrics.count_error(api_error.code, stream=True)
        logger.error("streamed turn on thread %s failed: %s", turn.thread_id, error,
                     exc_info=api_error.code == "internal_error")  # fmt: skip
        yield sse(error_frame(api_error.message, api_error.code, turn.thread_id))
    yield sse("[DONE]")


@router.post("/invocations", summary="Run one agent turn (MLflow ResponsesAgent shape)")
async def invocations(request: Request, body: ResponsesRequest) -> Any:
    return await _respond(request, body)


@router.post("/responses", summary="Run one agent turn (OpenAI Responses shape)")
async def responses(request: Request, body: ResponsesRequest) -> Any:
    return await _respond(request, body)
