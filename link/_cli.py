"""The ``fedzero-link`` daemon command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from fedzero.core import ConfigurationError
from fedzero.core.runtime import DaemonCli, default_state_dir

from ._config import LinkConfig
from ._link import Link

app = typer.Typer(add_completion=False, help="Run the fedzero link, the hub of a federation.")

# Flags default to None ("not given"), so a config file or FEDZERO_LINK_* variable
# is only overridden by flags the user actually passed. One alias per option.
_Str = Optional[str]  # noqa: UP045 - typer needs Optional
_Float = Optional[float]  # noqa: UP045
_Int = Optional[int]  # noqa: UP045
_Path = Optional[Path]  # noqa: UP045
_Bool = Optional[bool]  # noqa: UP045

_Config = Annotated[_Path, typer.Option(help="TOML file with a [link] table.")]
_PrintConfig = Annotated[
    bool, typer.Option("--print-config", help="Print the effective configuration and exit.")
]
_Fleet = Annotated[_Str, typer.Option(help="Where nodes connect [tcp://127.0.0.1:9092].")]
_App = Annotated[_Str, typer.Option(help="Where ServerApps connect [tcp://127.0.0.1:9091].")]
_Control = Annotated[_Str, typer.Option(help="Where the CLI connects [tcp://127.0.0.1:9093].")]
_Http = Annotated[_Str, typer.Option(help='Stats web server host:port ("" disables).')]
_StateDir = Annotated[_Path, typer.Option(help="Runs, metrics, checkpoints (SQLite).")]
_Interval = Annotated[_Float, typer.Option(help="Seconds between node pings [10].")]
_Timeout = Annotated[_Float, typer.Option(help="Silence before a node is offline [30].")]
_MaxMessage = Annotated[_Int, typer.Option(help="Largest frame accepted, MB [4096].")]
_Uploads = Annotated[_Int, typer.Option(help="Large uploads at once [4].")]
_UploadMb = Annotated[_Int, typer.Option(help="MB of large uploads at once [256].")]
_SecretKey = Annotated[_Path, typer.Option(help="The link's CURVE .key_secret file.")]
_Allowed = Annotated[_Path, typer.Option(help="Allowed node public keys (*.key).")]
_ControlAllowed = Annotated[
    _Path, typer.Option(help="Allowed user public keys on the control endpoint.")
]
_Retention = Annotated[_Int, typer.Option(help="Newest checkpoints kept per run, 0 = all [3].")]
_Grace = Annotated[_Float, typer.Option(help="SIGTERM: seconds to finish rounds [30].")]
_LogLevel = Annotated[_Str, typer.Option(help="debug, info, warning, error [info].")]
_Warmup = Annotated[
    _Bool, typer.Option("--warmup/--no-warmup", help="Compile every kernel at start [no].")
]
_CacheDir = Annotated[_Path, typer.Option(help="Compiled-kernel cache [Numba's default].")]


@app.command()
def main(
    config: _Config = None,
    print_config: _PrintConfig = False,
    fleet_address: _Fleet = None,
    app_address: _App = None,
    control_address: _Control = None,
    http_address: _Http = None,
    state_dir: _StateDir = None,
    heartbeat_interval: _Interval = None,
    heartbeat_timeout: _Timeout = None,
    max_message_mb: _MaxMessage = None,
    max_concurrent_uploads: _Uploads = None,
    max_upload_mb: _UploadMb = None,
    curve_secret_key: _SecretKey = None,
    allowed_keys_dir: _Allowed = None,
    control_allowed_keys_dir: _ControlAllowed = None,
    checkpoint_retention: _Retention = None,
    drain_grace: _Grace = None,
    log_level: _LogLevel = None,
    warmup: _Warmup = None,
    cache_dir: _CacheDir = None,
) -> None:
    """Serve nodes, ServerApps and the CLI until SIGTERM (drain) or SIGINT."""
    cli = DaemonCli("fedzero-link", "link", LinkConfig, locals())
    cfg = cli.load()
    if cfg.state_dir is None:  # the daemon keeps its history: user data dir, or systemd's
        cfg.state_dir = default_state_dir() / "link"
    cli.setup(cfg)
    if cfg.cache_dir is not None:  # before the fold worker imports Numba
        os.environ["FEDZERO_CACHE_DIR"] = str(cfg.cache_dir)
    try:
        link = Link(cfg, notifier=cli.notifier)
    except ConfigurationError as exc:
        cli.fail(exc)
    cli.handle_signals(
        drain=lambda: link.drain(cfg.drain_grace),
        reload=lambda: link.reload(cli.config_file, cli.flags),
    )
    link.run()
    if link.startup_error is not None:
        cli.fail(link.startup_error)


def run() -> None:
    """Entry point of the ``fedzero-link`` console script."""
    app()
