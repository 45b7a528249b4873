"""The ``fedzero-node`` daemon command."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from fedzero.core import ConfigurationError, CurveKeys, configure_logging
from fedzero.core._loader import load_client_app, parse_config_items, read_app_spec
from fedzero.node._agent import DEFAULT_LINK, NodeAgent

app = typer.Typer(add_completion=False, help="Run a fedzero node next to the data.")


@app.command()
def main(
    app_dir: Annotated[Path, typer.Option("--app", help="App project folder (pyproject.toml).")],
    link: Annotated[str, typer.Option(help="The link's fleet endpoint.")] = DEFAULT_LINK,
    node_config: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer needs Optional here
        typer.Option(help="Node configuration, key=value[,key=value] (repeatable)."),
    ] = None,
    node_id: Annotated[Optional[int], typer.Option(help="Fixed node id.")] = None,  # noqa: UP045
    curve_secret_key: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="This node's CURVE .key_secret file."),
    ] = None,
    link_public_key: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="The link's CURVE public .key file."),
    ] = None,
    drain_grace: Annotated[
        float, typer.Option(help="On SIGTERM, seconds to let running tasks finish.")
    ] = 30.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Connect to the link and run the app's ClientApp for every run."""
    configure_logging(log_level)
    try:
        client_app = load_client_app(read_app_spec(app_dir))
        curve = None
        if curve_secret_key is not None or link_public_key is not None:
            if curve_secret_key is None or link_public_key is None:
                raise ConfigurationError("--curve-secret-key and --link-public-key go together")
            curve = CurveKeys.load(curve_secret_key, link_public_key)
        agent = NodeAgent(
            client_app,
            link,
            node_config=parse_config_items(node_config or []),
            node_id=node_id,
            curve=curve,
        )
    except ConfigurationError as exc:
        typer.echo(f"fedzero-node: {exc}", err=True)
        raise typer.Exit(2) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.drain(drain_grace))
    agent.run()


def run() -> None:
    """Entry point of the ``fedzero-node`` console script."""
    app()
