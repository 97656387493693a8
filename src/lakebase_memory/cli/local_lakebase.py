"""`lakebase-memory local-lakebase`: run a local stand-in for Databricks Lakebase until Ctrl-C."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from lakebase_memory.errors import LakebaseMemoryError

DEFAULT_DATA_DIR = Path(".lakebase-memory/local-lakebase")


def local_lakebase(
    data_dir: Annotated[
        Path, typer.Option(help="Folder of its state and database; kept across runs.")
    ] = DEFAULT_DATA_DIR,
    token_ttl: Annotated[
        float, typer.Option(help="Lifetime of new database credentials, in seconds.")
    ] = 3600.0,
    http_port: Annotated[
        int, typer.Option(help="REST port (DATABRICKS_HOST); 0: last run's, else any free.")
    ] = 0,
    pg_port: Annotated[
        int, typer.Option(help="PostgreSQL TLS port (PGPORT); 0: last run's, else any free.")
    ] = 0,
    instance_name: Annotated[
        str, typer.Option(help="Name of the database instance.")
    ] = "local-lakebase",
    owner: Annotated[
        str, typer.Option(help="Email of the instance owner (the DATABRICKS_TOKEN's user).")
    ] = "owner@example.com",
    service_principal: Annotated[
        list[str] | None,
        typer.Option(help="Display name of a service principal to create (repeatable)."),
    ] = None,
    app: Annotated[
        list[str] | None,
        typer.Option(
            help="Name of a Databricks App to create, with the instance as its "
            "database resource (repeatable)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "warning",
) -> None:
    """Run a local Databricks Lakebase (REST API + TLS PostgreSQL) for offline development."""
    from lakebase_memory.local_lakebase import LocalLakebase  # heavy: only for this command

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    lakebase = LocalLakebase(
        data_dir,
        instance_name=instance_name,
        owner=owner,
        token_ttl=token_ttl,
        http_port=http_port,
        pg_port=pg_port,
    )
    # SIGTERM (a process manager, `kill`) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        lakebase.start()
        principals = [lakebase.add_service_principal(name) for name in service_principal or []]
        for name in app or []:
            lakebase.add_app(name)
            lakebase.attach_app_resource(name)
        typer.echo("# local Lakebase is running. Put these lines in .env.local:")
        for line in lakebase.env_lines():
            typer.echo(line)
        typer.echo(
            f"# autoscaling alternative: LAKEBASE_AUTOSCALING_ENDPOINT={lakebase.endpoint_name}"
        )
        for principal in principals:
            typer.echo(
                f"# service principal {principal.display_name!r}: application id {principal.name}, "
                f"token {principal.token}, OAuth secret {principal.client_secret}"
            )
        for name in app or []:
            env = " ".join(f"{key}={value}" for key, value in lakebase.app_env(name).items())
            typer.echo(f"# app {name!r} environment: {env}")
        typer.echo(f"# data in {lakebase.data_dir}; Ctrl-C stops it")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except (LakebaseMemoryError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    finally:
        lakebase.stop()
    typer.echo("# local Lakebase stopped")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
