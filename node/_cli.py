"""The ``fedzero-node`` daemon command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fedzero.core import ConfigurationError, CurveKeys
from fedzero.core.bundles import BundleError, BundlePolicy, load_client_app, read_app_spec
from fedzero.core.runtime import DaemonCli, Notifier

from ._agent import NodeAgent
from ._config import NodeConfig

app = typer.Typer(add_completion=False, help="Run a fedzero node next to the data.")

# Flags default to None ("not given"), so a config file or FEDZERO_NODE_* variable
# is only overridden by flags the user actually passed. One alias per option.
_Str = Optional[str]  # noqa: UP045 - typer needs Optional
_Int = Optional[int]  # noqa: UP045
_Float = Optional[float]  # noqa: UP045
_Path = Optional[Path]  # noqa: UP045
_List = Optional[list[str]]  # noqa: UP045

_Config = Annotated[_Path, typer.Option(help="TOML file with a [node] table.")]
_PrintConfig = Annotated[
    bool, typer.Option("--print-config", help="Print the effective configuration and exit.")
]
_AppDir = Annotated[_Path, typer.Option("--app", help="App project folder (pyproject.toml).")]
_Link = Annotated[_Str, typer.Option(help="The link's fleet endpoint [tcp://127.0.0.1:9092].")]
_Isolation = Annotated[_Str, typer.Option(help="process (a worker per run) or thread.")]
_Bundles = Annotated[_Path, typer.Option(help="File of allowed bundle hashes.")]
_NodeConfig = Annotated[_List, typer.Option(help="key=value[,key=value] (repeatable).")]
_NodeId = Annotated[_Int, typer.Option(help="Fixed node id.")]
_StateDir = Annotated[_Path, typer.Option(help="Identity and caches.")]
_SecretKey = Annotated[_Path, typer.Option(help="This node's CURVE .key_secret file.")]
_LinkKey = Annotated[_Path, typer.Option(help="The link's CURVE public .key file.")]
_Grace = Annotated[_Float, typer.Option(help="SIGTERM: seconds to finish tasks [30].")]
_LogLevel = Annotated[_Str, typer.Option(help="debug, info, warning, error [info].")]


@app.command()
def main(
    config: _Config = None,
    print_config: _PrintConfig = False,
    app_dir: _AppDir = None,
    link: _Link = None,
    isolation: _Isolation = None,
    allowed_bundles: _Bundles = None,
    node_config: _NodeConfig = None,
    node_id: _NodeId = None,
    state_dir: _StateDir = None,
    curve_secret_key: _SecretKey = None,
    link_public_key: _LinkKey = None,
    drain_grace: _Grace = None,
    log_level: _LogLevel = None,
) -> None:
    """Connect to the link and run the app's ClientApp for every run."""
    cli = DaemonCli("fedzero-node", "node", NodeConfig, locals(), rename={"app_dir": "app"})
    cfg = cli.load()
    cli.setup(cfg)
    try:
        agent = _agent(cfg, cli.notifier)
    except (ConfigurationError, BundleError) as exc:
        cli.fail(exc)
    cli.handle_signals(drain=lambda: agent.drain(cfg.drain_grace), reload=cli.reload_log_level)
    try:
        agent.run()
    except ConfigurationError as exc:  # e.g. a link address ZeroMQ cannot connect to
        cli.fail(exc)


def _agent(cfg: NodeConfig, notifier: Notifier) -> NodeAgent:
    """The node agent ``cfg`` describes (its app and bundle policy checked now)."""
    client_app = None
    if cfg.app is not None and cfg.isolation == "thread":
        client_app = load_client_app(read_app_spec(cfg.app))
    elif cfg.app is not None:
        read_app_spec(cfg.app)  # fail now, not at the first task, if the folder is wrong
    policy = BundlePolicy.from_file(cfg.allowed_bundles) if cfg.allowed_bundles else None
    curve = None
    if cfg.curve_secret_key is not None and cfg.link_public_key is not None:
        curve = CurveKeys.load(cfg.curve_secret_key, cfg.link_public_key)
    return NodeAgent(
        client_app,
        cfg.link,
        app_dir=cfg.app,
        isolation=cfg.isolation,
        bundle_dir=cfg.state_dir / "apps" if cfg.state_dir else None,
        allowed_bundles=policy.allowed_hashes if policy else None,
        log_level=cfg.log_level,
        node_config=cfg.node_config,
        state_dir=cfg.state_dir,
        node_id=cfg.node_id,
        curve=curve,
        notifier=notifier,
    )


def run() -> None:
    """Entry point of the ``fedzero-node`` console script."""
    app()
