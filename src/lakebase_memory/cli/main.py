"""`lakebase-memory`: set-up and thread management from the command line."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from lakebase_memory.cli.configure import configure
from lakebase_memory.cli.local_lakebase import local_lakebase
from lakebase_memory.cli.start_app import start
from lakebase_memory.config import load_settings
from lakebase_memory.database import check_login, open_target
from lakebase_memory.errors import LakebaseMemoryError
from lakebase_memory.schema import ensure_schema

app = typer.Typer(help="lakebase-memory: agent memory in PostgreSQL.", no_args_is_help=True)
app.command("start", help="Start the server (same as start-app).")(start)
app.command("configure")(configure)
app.command("local-lakebase")(local_lakebase)


@app.command()
def setup() -> None:
    """Create or upgrade the schema objects now, as the configured (owner) role."""
    settings = load_settings()

    async def run() -> list[str]:
        target = await asyncio.to_thread(open_target, settings)
        try:
            version = await check_login(target)
            typer.echo(f"database: {target.kind.value} PostgreSQL {version} at {target.location}")
            return await ensure_schema(await target.login_conninfo(), settings.checkpoint_schema)
        finally:
            await asyncio.to_thread(target.close)

    try:
        created = asyncio.run(run())
    except LakebaseMemoryError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    for line in created:
        typer.echo(f"✓ created {line}")
    if not created:
        typer.echo("✓ everything is up to date")


@app.command()
def config(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the effective settings (secrets hidden)."""
    settings = load_settings()
    shown = {
        key: ("***" if value and _is_secret(key) else value)
        for key, value in settings.model_dump(mode="json").items()
    }
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
        return
    for key, value in shown.items():
        typer.echo(f"{key.upper()}={'' if value is None else value}")


def _is_secret(key: str) -> bool:
    return any(word in key for word in ("key", "password", "token", "secret")) or key in (
        "database_url",
    )


if __name__ == "__main__":
    app()
