"""`lakebase-memory`: set-up and thread management from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from lakebase_memory.cli.configure import configure
from lakebase_memory.cli.doctor import doctor
from lakebase_memory.cli.grant import grant
from lakebase_memory.cli.local_lakebase import local_lakebase
from lakebase_memory.cli.setup import setup
from lakebase_memory.cli.start_app import start
from lakebase_memory.cli.threads import app as threads_app
from lakebase_memory.config import load_settings

app = typer.Typer(help="lakebase-memory: agent memory in PostgreSQL.", no_args_is_help=True)
app.command("start", help="Start the server (same as start-app).")(start)
app.command("configure")(configure)
app.command("local-lakebase")(local_lakebase)
app.command("doctor")(doctor)
app.command("setup")(setup)
app.command("grant")(grant)
app.add_typer(threads_app, name="threads")


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
    # By name part, so that MAX_OUTPUT_TOKENS (a number) is shown while DATABRICKS_TOKEN is not.
    return bool({"key", "password", "token", "secret"} & set(key.split("_"))) or key in (
        "database_url",
    )


if __name__ == "__main__":
    app()
