"""`lakebase-memory doctor`: check the whole path to the memory database and say what to fix."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from lakebase_memory.config import load_settings
from lakebase_memory.diagnosis import CheckResult, Status, diagnose

NAME_WIDTH = 15
INDENT = " " * (NAME_WIDTH + 3)


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Check configuration, authentication, instance, credential, login, tables, privileges and
    the app resource, in order; print the fix for each failure. Exit 0 only if all pass."""
    with _quiet_sdk():
        results = asyncio.run(diagnose(load_settings))
    if as_json:
        typer.echo(json.dumps([result.to_dict() for result in results], indent=2))
    else:
        for line in render(results):
            typer.echo(line)
    if not all(result.ok for result in results):
        raise typer.Exit(1)


def render(results: list[CheckResult]) -> Iterator[str]:
    """One line per check with its symbol, continued and followed by the fix where it failed."""
    for result in results:
        lines = result.detail.splitlines() or [""]
        yield f"{result.symbol} {result.name:<{NAME_WIDTH}} {lines[0]}"
        yield from (INDENT + line for line in lines[1:])
        if result.status is Status.FAIL:
            yield from (f"{INDENT}- {item}" for item in result.items)
            if result.fix:
                yield f"  fix: {result.fix}"
    failures = sum(result.status is Status.FAIL for result in results)
    if failures:
        yield f"{failures} check(s) failed: apply the fix under each ✗, then run doctor again."
    else:
        yield "All checks passed."


@contextmanager
def _quiet_sdk() -> Iterator[None]:
    # The SDK logs warnings (host metadata, retries) that the checks already report.
    sdk_logger = logging.getLogger("databricks.sdk")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        sdk_logger.setLevel(level)
