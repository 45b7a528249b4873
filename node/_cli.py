"""The ``fedzero-node`` daemon command."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fedzero.core import ConfigurationError, CurveKeys, configure_logging
from fedzero.core.bundles import BundleError, BundlePolicy, load_client_app, read_app_spec
from fedzero.core.runtime import Notifier, load_config, render_config

from ._agent import NodeAgent
from ._config import NodeConfig

app = typer.Typer(add_completion=False, help="Run a fedzero node next to the data.")

_Str = Optional[str]  # noqa: UP045 - typer needs Optional
_Int = Optional[int]  # noqa: UP045
_Float = Optional[float]  # noqa: UP045
_Path = Optional[Path]  # noqa: UP045
_List = Optional[list[str]]  # noqa: UP045


@app.command()
def main(
    config: Annotated[_Path, typer.Option(help="TOML file with a [node] table.")] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the effective configuration and exit.")
    ] = False,
    app_dir: Annotated[
        _Path, typer.Option("--app", help="App project folder (pyproject.toml).")
    ] = None,
    link: Annotated[
        _Str, typer.Option(help="The link's fleet endpoint [tcp://127.0.0.1:9092].")
    ] = None,
    isolation: Annotated[_Str, typer.Option(help="process (a worker per run) or thread.")] = None,
    allowed_bundles: Annotated[_Path, typer.Option(help="File of allowed bundle hashes.")] = None,
    node_config: Annotated[_List, typer.Option(help="key=value[,key=value] (repeatable).")] = None,
    node_id: Annotated[_Int, typer.Option(help="Fixed node id.")] = None,
    state_dir: Annotated[_Path, typer.Option(help="Identity and caches.")] = None,
    curve_secret_key: Annotated[
        _Path, typer.Option(help="This node's CURVE .key_secret file.")
    ] = None,
    link_public_key: Annotated[
        _Path, typer.Option(help="The link's CURVE public .key file.")
    ] = None,
    drain_grace: Annotated[
        _Float, typer.Option(help="SIGTERM: seconds to finish tasks [30].")
    ] = None,
    log_level: Annotated[_Str, typer.Option(help="debug, info, warning, error [info].")] = None,
) -> None:
    """Connect to the link and run the app's ClientApp for every run."""
    notifier = Notifier.from_env(unset_environment=True)
    names = {"app_dir": "app"}
    flags: dict[str, Any] = {
        names.get(k, k): v for k, v in locals().items()
        if k not in ("config", "print_config", "notifier", "names") and v is not None
    }  # fmt: skip
    try:
        cfg = load_config(NodeConfig, "node", config_file=config, overrides=flags)
        if print_config:
            typer.echo(render_config(cfg, "node"))
            raise typer.Exit(0)
        configure_logging(cfg.log_level)
        client_app = None
        if cfg.app is not None and cfg.isolation == "thread":
            client_app = load_client_app(read_app_spec(cfg.app))
        elif cfg.app is not None:
            read_app_spec(cfg.app)  # fail now, not at the first task, if the folder is wrong
        policy = BundlePolicy.from_file(cfg.allowed_bundles) if cfg.allowed_bundles else None
        curve = None
        if cfg.curve_secret_key is not None and cfg.link_public_key is not None:
            curve = CurveKeys.load(cfg.curve_secret_key, cfg.link_public_key)
        agent = NodeAgent(client_app, cfg.link, app_dir=cfg.app, isolation=cfg.isolation,
                          bundle_dir=cfg.state_dir / "apps" if cfg.state_dir else None,
                          allowed_bundles=policy.allowed_hashes if policy else None,
                          log_level=cfg.log_level, node_config=cfg.node_config,
                          state_dir=cfg.state_dir,
                          node_id=cfg.node_id, curve=curve, notifier=notifier)  # fmt: skip
    except (ConfigurationError, BundleError) as exc:
        typer.echo(f"fedzero-node: {exc}", err=True)
        raise typer.Exit(2) from None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.drain(cfg.drain_grace))
    signal.signal(signal.SIGHUP, lambda *_: _reload(config, flags))
    agent.run()


def _reload(config: Path | None, flags: dict[str, Any]) -> None:
    """SIGHUP: re-read the configuration and apply the log level."""
    try:
        configure_logging(
            load_config(NodeConfig, "node", config_file=config, overrides=flags).log_level
        )
    except ConfigurationError as exc:
        typer.echo(f"fedzero-node: reload failed: {exc}", err=True)


def run() -> None:
    """Entry point of the ``fedzero-node`` console script."""
    app()
