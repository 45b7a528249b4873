"""The ``fedzero`` command: run apps, manage keys."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import ConfigurationError, FedzeroError, generate_keys
from ._control_client import ControlClient, resolve_connection
from ._run_config import RUN_CONFIG_HELP

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="fedzero: federated learning on ZeroMQ."
)


@app.command()
def local(
    app_dir: Annotated[Path, typer.Argument(help="App project folder.")] = Path("."),
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, help="Nodes to start.")] = 4,
    run_config: Annotated[
        Optional[list[str]],  # noqa: UP045 - typer needs Optional here
        typer.Option("--run-config", "-c", help=RUN_CONFIG_HELP),
    ] = None,
) -> None:
    """Start a link and N nodes on this machine, run the app once, stop them all."""
    from .. import configure_logging
    from ._local import run_local
    from ._run_config import parse_run_config

    configure_logging("warning", fmt="console", stream=sys.stderr)
    try:
        code = run_local(app_dir, nodes, parse_run_config(run_config))
    except ConfigurationError as exc:
        typer.echo(f"fedzero local: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(code)


_LINK = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--link", help="The link's control address (overrides the profile)."),
]
_FED = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--federation", "-f", help="A connection profile from ~/.config/fedzero/config.toml."
    ),
]
_JSON = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]


def _client(link: str | None, federation: str | None) -> ControlClient:
    try:
        address, curve = resolve_connection(link, federation)
        return ControlClient(address, curve=curve)
    except ConfigurationError as exc:
        typer.echo(f"fedzero: {exc}", err=True)
        raise typer.Exit(2) from None


def _fail(exc: Exception) -> NoReturn:
    typer.echo(f"fedzero: {exc}", err=True)
    # A wrong address is the user's to fix (exit 2); anything else failed on the way (1).
    raise typer.Exit(2 if isinstance(exc, ConfigurationError) else 1) from None


@app.command("run")
def run_app(
    app_dir: Annotated[Path, typer.Argument(help="App project folder.")] = Path("."),
    run_config: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--run-config", "-c", help=RUN_CONFIG_HELP),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Stream the run's log until it ends.")
    ] = False,
    link: _LINK = None,
    federation: _FED = None,
    as_json: _JSON = False,
) -> None:
    """Bundle the app, submit it to the link, and (with --follow) watch it run."""
    from ..bundles import build_bundle
    from ._local import check_run_config
    from ._run_config import parse_run_config

    try:
        bundle = build_bundle(app_dir)
        overrides = parse_run_config(run_config)
        check_run_config(overrides, bundle.config)
    except (ConfigurationError, ValueError) as exc:
        typer.echo(f"fedzero run: {exc}", err=True)
        raise typer.Exit(2) from None
    with _client(link, federation) as client:
        try:
            _, header = client.request(
                "submit_run",
                bundle.data,
                app={"name": bundle.name, "hash": bundle.hash},
                run_config=overrides,
            )
        except FedzeroError as exc:
            _fail(exc)
        run_id = int(header["run_id"])
        if as_json and not follow:
            typer.echo(json.dumps({"run_id": run_id, "bundle": bundle.hash}))
            return
        typer.echo(f"run {run_id} submitted: {bundle.name} (bundle {bundle.hash[:12]})")
        if not follow:
            return
        empty: list[dict[str, Any]] = []  # rounds that aggregated no reply
        for event in client.follow_logs(run_id):
            typer.echo(_event_line(event))
            data = event.get("data") or {}
            if event["kind"] == "round_aggregated" and data.get("replies") == 0:
                empty.append(data)
        _, header = client.request("list_runs", limit=1000)
    row: dict[str, Any] = next((r for r in header["runs"] if r["run_id"] == run_id), {})
    typer.echo(
        f"run {run_id}: {row.get('status', 'unknown')}"
        + (f" ({row['error']})" if row.get("error") else "")
    )
    if empty:
        _report_empty_rounds(empty)
    raise typer.Exit(0 if row.get("status") == "finished" and not empty else 1)


def _report_empty_rounds(empty: list[dict[str, Any]]) -> None:
    """Say that rounds aggregated nothing, with the first distinct node errors."""
    typer.echo(f"{len(empty)} round(s) aggregated no reply (first: round {empty[0].get('round')})")
    reasons = dict.fromkeys(r for data in empty for r in (data.get("failed") or {}).values())
    for reason in list(reasons)[:3]:
        typer.echo(f"  node error: {reason}")


@app.command("ls")
def list_runs(link: _LINK = None, federation: _FED = None, as_json: _JSON = False) -> None:
    """List the runs: status, start, duration, rounds, nodes, outcome."""
    with _client(link, federation) as client:
        try:
            _, header = client.request("list_runs", limit=100)
        except FedzeroError as exc:
            _fail(exc)
    runs = header["runs"]
    if as_json:
        typer.echo(json.dumps(runs, indent=2))
        return
    table = Table("run", "status", "app", "started", "secs", "rounds", "nodes", "error")
    for r in runs:
        ended = r.get("ended_at") or r.get("now") or time.time()
        table.add_row(
            str(r["run_id"]),
            _status(r["status"]),
            escape(str(r.get("app") or "-")),
            _when(r["started_at"]),
            f"{ended - r['started_at']:.1f}",
            str(r.get("rounds_done", 0)),
            str(len(r.get("nodes") or [])),
            escape((r.get("error") or "")[:80]),
        )
    Console().print(table)


@app.command("log")
def show_log(
    run_id: Annotated[int, typer.Argument(help="The run.")],
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep streaming until the run ends.")
    ] = False,
    link: _LINK = None,
    federation: _FED = None,
    as_json: _JSON = False,
) -> None:
    """Show a run's log: the ServerApp's output and the link's events for the run."""
    with _client(link, federation) as client:
        try:
            if follow:
                for event in client.follow_logs(run_id):
                    typer.echo(json.dumps(event) if as_json else _event_line(event))
                return
            since = 0
            while True:
                _, header = client.request("logs", run_id=run_id, since_id=since, follow=False)
                for event in header["events"]:
                    typer.echo(json.dumps(event) if as_json else _event_line(event))
                    since = event["id"]
                if header["done"]:
                    return
        except FedzeroError as exc:
            _fail(exc)


@app.command("stop")
def stop_run(
    run_id: Annotated[int, typer.Argument(help="The run.")],
    link: _LINK = None,
    federation: _FED = None,
) -> None:
    """Stop a run: its ServerApp and its ClientApps end, its messages are dropped."""
    with _client(link, federation) as client:
        try:
            _, header = client.request("stop_run", run_id=run_id)
        except FedzeroError as exc:
            _fail(exc)
    typer.echo(f"run {run_id}: {header['status']}")


@app.command("nodes")
def list_nodes(link: _LINK = None, federation: _FED = None, as_json: _JSON = False) -> None:
    """List the nodes the link knows: online or not, last seen, traffic."""
    with _client(link, federation) as client:
        try:
            _, header = client.request("list_nodes")
        except FedzeroError as exc:
            _fail(exc)
    nodes = header["nodes"]
    if as_json:
        typer.echo(json.dumps(nodes, indent=2))
        return
    table = Table("node", "online", "last seen", "config", "MB in", "MB out")
    for n in nodes:
        mb_in, mb_out = (n.get("bytes_in") or 0) / 1e6, (n.get("bytes_out") or 0) / 1e6
        table.add_row(
            str(n["node_id"]),
            "yes" if n.get("online") else "no",
            _when(n.get("last_seen")),
            escape(json.dumps(n.get("node_config", {}))),
            f"{mb_in:.1f}",
            f"{mb_out:.1f}",
        )
    Console().print(table)


def _event_line(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    if event["kind"] == "log":
        return str(data.get("line", ""))
    if event["kind"] == "round_reported":  # the round's metrics, as the dashboard shows them
        metrics = "  ".join(f"{k}={_metric(v)}" for k, v in (data.get("metrics") or {}).items())
        return f"[{_when(event['at'])}] round {data.get('round', '?'):>3}  {metrics}"
    if event["kind"] == "round_aggregated":
        failed = data.get("failures", 0)
        return (
            f"[{_when(event['at'])}] round {data.get('round', '?')} aggregated "
            f"({data.get('method', '?')}): {data.get('replies', 0)} replies, {failed} failed"
        )
    details = " ".join(f"{k}={v}" for k, v in data.items())
    return (
        f"[{_when(event['at'])}] {event['kind']}"
        + (f" node={event['node_id']}" if event.get("node_id") else "")
        + (f" {details}" if details else "")
    )


def _metric(value: object) -> str:
    if isinstance(value, dict) and "f" in value:  # a non-finite float on the wire
        return str(value["f"])
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _when(at: float | None) -> str:
    return "-" if not at else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _status(status: str) -> str:
    colour = {"finished": "green", "running": "cyan", "failed": "red", "stopped": "yellow"}.get(
        status, "magenta"
    )
    return f"[{colour}]{status}[/]"


@app.command()
def new(
    name: Annotated[str, typer.Argument(help="The app's name (letters, digits, _ and -).")],
    framework: Annotated[str, typer.Option(help="numpy or pytorch.")] = "numpy",
    directory: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--dir", help="Where to create it (default: ./NAME)."),
    ] = None,
) -> None:
    """Create a working app project from a template (offline)."""
    from ._templates import create_app

    try:
        path = create_app(name, directory or Path(name), framework=framework)
    except ConfigurationError as exc:
        typer.echo(f"fedzero new: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"created {path}\nrun it:  fedzero local {path} --nodes 4")


@app.command()
def build(
    app_dir: Annotated[Path, typer.Argument(help="App project folder.")] = Path("."),
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the bundle.")] = Path(
        "."
    ),
) -> None:
    """Make a deterministic bundle of the app; its hash names it (for node allow-lists)."""
    from ..bundles import build_bundle

    try:
        bundle = build_bundle(app_dir)
        path = bundle.write(output)
    except ConfigurationError as exc:
        typer.echo(f"fedzero build: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{path}\nhash {bundle.hash}")


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
