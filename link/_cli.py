"""The ``fedzero-link`` daemon command."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from fedzero.core import ConfigurationError, configure_logging
from fedzero.link._config import DEFAULT_APP_ADDRESS, DEFAULT_FLEET_ADDRESS, LinkConfig
from fedzero.link._link import Link

app = typer.Typer(add_completion=False, help="Run the fedzero link, the hub of a federation.")


@app.command()
def main(
    fleet_address: Annotated[
        str, typer.Option(help="Where nodes connect.")
    ] = DEFAULT_FLEET_ADDRESS,
    app_address: Annotated[
        str, typer.Option(help="Where ServerApps connect.")
    ] = DEFAULT_APP_ADDRESS,
    heartbeat_interval: Annotated[float, typer.Option(help="Seconds between node pings.")] = 1.0,
    heartbeat_timeout: Annotated[
        float, typer.Option(help="Silence before a node is offline.")
    ] = 3.0,
    max_concurrent_uploads: Annotated[
        int, typer.Option(help="Large uploads admitted at once.")
    ] = 4,
    max_upload_mb: Annotated[int, typer.Option(help="MB of large uploads admitted at once.")] = 256,
    max_message_mb: Annotated[
        int, typer.Option(help="Largest frame accepted, in MB (bigger ones disconnect).")
    ] = 4096,
    curve_secret_key: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional here
        typer.Option(help="The link's CURVE .key_secret file (enables CURVE)."),
    ] = None,
    allowed_keys_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Directory of allowed node public keys (*.key); SIGHUP reloads."),
    ] = None,
    drain_grace: Annotated[
        float, typer.Option(help="On SIGTERM, seconds to let in-flight rounds finish.")
    ] = 30.0,
    warmup: Annotated[
        bool, typer.Option(help="Compile the aggregation kernels at start-up (in the background).")
    ] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Serve nodes and ServerApps until SIGTERM or SIGINT."""
    configure_logging(log_level)
    config = LinkConfig(
        fleet_address=fleet_address,
        app_address=app_address,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        max_concurrent_uploads=max_concurrent_uploads,
        max_upload_bytes=max_upload_mb * 2**20,
        max_message_bytes=max_message_mb * 2**20,
        curve_secret_key=curve_secret_key,
        allowed_keys_dir=allowed_keys_dir,
        warmup=warmup,
    )
    try:
        link = Link(config)
    except ConfigurationError as exc:
        typer.echo(f"fedzero-link: {exc}", err=True)
        raise typer.Exit(2) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: link.drain(drain_grace))
    signal.signal(signal.SIGHUP, lambda *_: link.reload_keys())
    link.run()
    if link.startup_error is not None:
        typer.echo(f"fedzero-link: {link.startup_error}", err=True)
        raise typer.Exit(2)


def run() -> None:
    """Entry point of the ``fedzero-link`` console script."""
    app()
