"""The ``fedzero-link`` daemon command."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fedzero.core import ConfigurationError, configure_logging
from fedzero.core.runtime import Notifier, default_state_dir, load_config, render_config

from ._config import LinkConfig
from ._link import Link

app = typer.Typer(add_completion=False, help="Run the fedzero link, the hub of a federation.")

# Flags default to None ("not given"), so a config file or FEDZERO_LINK_* variable
# is only overridden by flags the user actually passed.
_Str = Optional[str]  # noqa: UP045 - typer needs Optional
_Float = Optional[float]  # noqa: UP045
_Int = Optional[int]  # noqa: UP045
_Path = Optional[Path]  # noqa: UP045
_Bool = Optional[bool]  # noqa: UP045


@app.command()
def main(
    config: Annotated[_Path, typer.Option(help="TOML file with a [link] table.")] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the effective configuration and exit.")
    ] = False,
    fleet_address: Annotated[
        _Str, typer.Option(help="Where nodes connect [tcp://127.0.0.1:9092].")
    ] = None,
    app_address: Annotated[
        _Str, typer.Option(help="Where ServerApps connect [tcp://127.0.0.1:9091].")
    ] = None,
    control_address: Annotated[
        _Str, typer.Option(help="Where the CLI connects [tcp://127.0.0.1:9093].")
    ] = None,
    http_address: Annotated[
        _Str, typer.Option(help='Stats web server host:port ("" disables).')
    ] = None,
    state_dir: Annotated[_Path, typer.Option(help="Runs, metrics, checkpoints (SQLite).")] = None,
    heartbeat_interval: Annotated[
        _Float, typer.Option(help="Seconds between node pings [1].")
    ] = None,
    heartbeat_timeout: Annotated[
        _Float, typer.Option(help="Silence before a node is offline [3].")
    ] = None,
    max_message_mb: Annotated[_Int, typer.Option(help="Largest frame accepted, MB [4096].")] = None,
    max_concurrent_uploads: Annotated[_Int, typer.Option(help="Large uploads at once [4].")] = None,
    max_upload_mb: Annotated[_Int, typer.Option(help="MB of large uploads at once [256].")] = None,
    curve_secret_key: Annotated[
        _Path, typer.Option(help="The link's CURVE .key_secret file.")
    ] = None,
    allowed_keys_dir: Annotated[
        _Path, typer.Option(help="Allowed node public keys (*.key).")
    ] = None,
    control_allowed_keys_dir: Annotated[
        _Path, typer.Option(help="Allowed user public keys on the control endpoint.")
    ] = None,
    checkpoint_retention: Annotated[
        _Int, typer.Option(help="Checkpoints kept per run, 0 = all.")
    ] = None,
    drain_grace: Annotated[
        _Float, typer.Option(help="SIGTERM: seconds to finish rounds [30].")
    ] = None,
    log_level: Annotated[_Str, typer.Option(help="debug, info, warning, error [info].")] = None,
    warmup: Annotated[
        _Bool, typer.Option("--warmup/--no-warmup", help="Compile kernels at start.")
    ] = None,
) -> None:
    """Serve nodes, ServerApps and the CLI until SIGTERM (drain) or SIGINT."""
    notifier = Notifier.from_env(unset_environment=True)
    flags: dict[str, Any] = {
        k: v for k, v in locals().items()
        if k not in ("config", "print_config", "notifier") and v is not None
    }  # fmt: skip
    try:
        cfg = load_config(LinkConfig, "link", config_file=config, overrides=flags)
    except ConfigurationError as exc:
        typer.echo(f"fedzero-link: {exc}", err=True)
        raise typer.Exit(2) from None
    if cfg.state_dir is None:  # the daemon keeps its history: user data dir, or systemd's
        cfg.state_dir = default_state_dir() / "link"
    if print_config:
        typer.echo(render_config(cfg, "link"))
        raise typer.Exit(0)
    configure_logging(cfg.log_level)
    try:
        link = Link(cfg, notifier=notifier)
    except ConfigurationError as exc:
        typer.echo(f"fedzero-link: {exc}", err=True)
        raise typer.Exit(2) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: link.drain(cfg.drain_grace))
    signal.signal(signal.SIGHUP, lambda *_: link.reload(config, flags))
    link.run()
    if link.startup_error is not None:
        typer.echo(f"fedzero-link: {link.startup_error}", err=True)
        raise typer.Exit(2)


def run() -> None:
    """Entry point of the ``fedzero-link`` console script."""
    app()
