"""The ``fedzero`` command: run apps, manage keys.

Built on :mod:`argparse` so that it starts as fast as Python does: ``fedzero
--help`` loads nothing but this package, and each command imports what it uses
(ZeroMQ to reach the link, rich to draw a table or a progress bar, the bundle
code to build an app). typer would add 0.5-1 s to every start on this machine
(it builds a pydantic adapter for each option).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .. import ConfigurationError
from . import _control_commands as control
from ._run_config import RUN_CONFIG_HELP

Command = Callable[[argparse.Namespace], int]


def local(args: argparse.Namespace) -> int:
    """Start a link and N nodes on this machine, run the app once, stop them all."""
    from .. import configure_logging
    from ._local import run_local
    from ._run_config import parse_run_config

    configure_logging("warning", fmt="console", stream=sys.stderr)
    try:
        return run_local(args.app_dir, args.nodes, parse_run_config(args.run_config))
    except ConfigurationError as exc:
        print(f"fedzero local: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def new(args: argparse.Namespace) -> int:
    """Create a working app project from a template (offline)."""
    from ._templates import create_app

    try:
        path = create_app(args.name, args.dir or Path(args.name), framework=args.framework)
    except ConfigurationError as exc:
        print(f"fedzero new: {exc}", file=sys.stderr)
        return 2
    print(f"created {path}\nrun it:  fedzero local {path} --nodes 4")
    return 0


def build(args: argparse.Namespace) -> int:
    """Make a deterministic bundle of the app; its hash names it (for node allow-lists)."""
    from ..bundles import build_bundle

    try:
        bundle = build_bundle(args.app_dir)
        path = bundle.write(args.output)
    except ConfigurationError as exc:
        print(f"fedzero build: {exc}", file=sys.stderr)
        return 2
    print(f"{path}\nhash {bundle.hash}")
    return 0


def keygen(args: argparse.Namespace) -> int:
    """Create a CURVE key pair (public NAME.key, secret NAME.key_secret)."""
    from .. import generate_keys

    public, secret = generate_keys(args.directory, args.name)
    print(f"public key: {public}\nsecret key: {secret} (keep it private)")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, fn: Command
) -> argparse.ArgumentParser:
    doc = (fn.__doc__ or "").strip()
    parser = sub.add_parser(name, help=doc[:1].lower() + doc[1:].rstrip("."), description=doc)
    parser.set_defaults(command=fn)
    return parser


def _app_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "app_dir", nargs="?", type=Path, default=Path("."), help="app project folder [.]"
    )


def _run_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-config", "-c", action="append", help=RUN_CONFIG_HELP)


def _connection(parser: argparse.ArgumentParser, as_json: bool = True) -> None:
    parser.add_argument("--link", help="the link's control address (overrides the profile)")
    parser.add_argument(
        "--federation", "-f", help="a connection profile from ~/.config/fedzero/config.toml"
    )
    if as_json:
        parser.add_argument("--json", dest="as_json", action="store_true", help="print JSON")


def _run_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", type=int, help="the run")


def parser() -> argparse.ArgumentParser:
    """The ``fedzero`` argument parser, one sub-command per action."""
    top = argparse.ArgumentParser(
        prog="fedzero", description="fedzero: federated learning on ZeroMQ."
    )
    sub = top.add_subparsers(title="commands", metavar="COMMAND")
    p = _command(sub, "local", local)
    _app_dir(p)
    p.add_argument("--nodes", "-n", type=_positive, default=4, help="nodes to start [4]")
    _run_config(p)
    p = _command(sub, "run", control.run_app)
    _app_dir(p)
    _run_config(p)
    p.add_argument("--follow", action="store_true", help="stream the run's log until it ends")
    _connection(p)
    _connection(_command(sub, "ls", control.list_runs))
    p = _command(sub, "log", control.show_log)
    _run_id(p)
    p.add_argument("--follow", action="store_true", help="keep streaming until the run ends")
    _connection(p)
    p = _command(sub, "stop", control.stop_run)
    _run_id(p)
    _connection(p, as_json=False)
    _connection(_command(sub, "nodes", control.list_nodes))
    p = _command(sub, "new", new)
    p.add_argument("name", help="the app's name (letters, digits, _ and -)")
    p.add_argument("--framework", default="numpy", help="numpy or pytorch [numpy]")
    p.add_argument("--dir", type=Path, help="where to create it [./NAME]")
    p = _command(sub, "build", build)
    _app_dir(p)
    p.add_argument("--output", "-o", type=Path, default=Path("."), help="folder for the bundle [.]")
    p = _command(sub, "keygen", keygen)
    p.add_argument("directory", type=Path, help="where to write the key files")
    p.add_argument("--name", default="node", help="base name: NAME.key and NAME.key_secret [node]")
    return top


def run(argv: list[str] | None = None) -> None:
    """Entry point of the ``fedzero`` console script: exits with the command's code."""
    top = parser()
    args = top.parse_args(argv)
    command: Command | None = getattr(args, "command", None)
    if command is None:  # no command: say what there is
        top.print_help()
        raise SystemExit(0)
    raise SystemExit(command(args))
