"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis generates the requests, a
bounded number per operation) against a live server on a real database: no 5xx from any
endpoint, and every 4xx in the project's one JSON error shape.

The schema is read from the app itself (no server needed to list the operations); each
operation is one test, driven through hypothesis directly (schemathesis's pytest plugin
does not run on pytest 9)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from conftest import LiveServer, make_settings
from lakebase_memory.server.app import create_app

# Per operation and mode; FUZZ_EXAMPLES=1000 for a deeper run by hand.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
SCHEMA = schemathesis.openapi.from_dict(create_app(make_settings("postgresql:///unused")).openapi())
OPERATIONS = {
    f"{op.method.upper()} {op.path}": op
    for op in (result.ok() for result in SCHEMA.get_all_operations())
}

# Requests can break the schema only where it constrains something: a body or the query.
CASES = [(name, GenerationMode.POSITIVE) for name in sorted(OPERATIONS)] + [
    (name, GenerationMode.NEGATIVE)
    for name, op in sorted(OPERATIONS.items())
    if list(op.body) or list(op.query)
]


def assert_error_shape(body: Any) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and {"code", "message"} <= set(error), body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    assert "Traceback" not in error["message"]


def test_every_operation_is_fuzzed() -> None:
    assert {"POST /invocations", "POST /responses", "GET /api/threads",
            "PATCH /api/threads/{thread_id}"} <= set(OPERATIONS)  # fmt: skip


@pytest.mark.parametrize(("name", "mode"), CASES, ids=[f"{n} {m.value}" for n, m in CASES])
def test_no_endpoint_fails_or_answers_an_error_out_of_shape(
    name: str, mode: GenerationMode, database: str, serve: Any
) -> None:
    """Requests that follow the schema (positive) and requests that break it (negative)."""
    server: LiveServer = serve(make_settings(database))
    statuses: list[int] = []

    @given(case=OPERATIONS[name].as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(case: Any) -> None:
        response = case.call(base_url=server.url, timeout=30)
        statuses.append(response.status_code)
        assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
        if 400 <= response.status_code < 500:
            types = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])
            assert types[0].startswith("application/json"), (
                case.as_curl_command(), response.status_code, response.text[:300]
            )  # fmt: skip
            assert_error_shape(response.json())

    check()
    assert statuses  # it did send requests (one, where the operation takes no input)
    if mode is GenerationMode.NEGATIVE:
        assert any(400 <= status < 500 for status in statuses)
