"""The ``fedzero`` command: run apps, manage keys."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fedzero.core import ConfigurationError, generate_keys

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="fedzero: federated learning on ZeroMQ."
)


@app.command()
def local(
    app_dir: Annotated[Path, typer.Argument(help="App project folder.")] = Path("."),
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, help="Nodes to start.")] = 4,
    run_config: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer needs Optional here
        typer.Option("--run-config", "-c", help="Override run config, key=value (repeatable)."),
    ] = None,
) -> None:
    """Start a link and N nodes on this machine, run the app once, stop them all."""
    from fedzero.core import configure_logging
    from fedzero.core._loader import parse_config_items
    from fedzero.link._local import run_local

    configure_logging("warning", fmt="console", stream=sys.stderr)
    try:
        code = run_local(app_dir, nodes, parse_config_items(run_config or []))
    except ConfigurationError as exc:
        typer.echo(f"fedzero local: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def keygen(
    directory: Annotated[Path, typer.Argument(help="Where to write the key files.")],
    name: Annotated[str, typer.Option(help="Base name: NAME.key and NAME.key_secret.")] = "node",
) -> None:
    """Create a CURVE key pair (public NAME.key, secret NAME.key_secret)."""
    public, secret = generate_keys(directory, name)
    typer.echo(f"public key: {public}\nsecret key: {secret} (keep it private)")


def run() -> None:
    """Entry point of the ``fedzero`` console script."""
    app()
