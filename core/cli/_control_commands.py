"""The ``fedzero`` commands that talk to a link's control endpoint: run, ls, log, stop, nodes.

Each takes the parsed arguments and returns the exit code. ZeroMQ comes in with
the control client and rich only to draw a table, so neither loads for
``fedzero --help`` or ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

from .. import ConfigurationError, FedzeroError

if TYPE_CHECKING:
    from ._control_client import ControlClient

Cell = str | tuple[str, str]
"""A table cell: its text, or its text and a rich style."""


def _echo(text: str, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def _client(args: argparse.Namespace) -> ControlClient:
    from ._control_client import ControlClient, resolve_connection

    try:
        address, curve = resolve_connection(args.link, args.federation)
        return ControlClient(address, curve=curve)
    except ConfigurationError as exc:
        _echo(f"fedzero: {exc}", err=True)
        raise SystemExit(2) from None


def _fail(exc: Exception) -> NoReturn:
    _echo(f"fedzero: {exc}", err=True)
    # A wrong address is the user's to fix (exit 2); anything else failed on the way (1).
    raise SystemExit(2 if isinstance(exc, ConfigurationError) else 1) from None


def run_app(args: argparse.Namespace) -> int:
    """Bundle the app, submit it to the link, and (with --follow) watch it run."""
    from ..bundles import build_bundle
    from ._local import check_run_config
    from ._run_config import parse_run_config

    try:
        bundle = build_bundle(args.app_dir)
        overrides = parse_run_config(args.run_config)
        check_run_config(overrides, bundle.config)
    except (ConfigurationError, ValueError) as exc:
        _echo(f"fedzero run: {exc}", err=True)
        return 2
    with _client(args) as client:
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
        if args.as_json and not args.follow:
            _echo(json.dumps({"run_id": run_id, "bundle": bundle.hash}))
            return 0
        _echo(f"run {run_id} submitted: {bundle.name} (bundle {bundle.hash[:12]})")
        if not args.follow:
            return 0
        empty: list[dict[str, Any]] = []  # rounds that aggregated no reply
        for event in client.follow_logs(run_id):
            _echo(_event_line(event))
            data = event.get("data") or {}
            if event["kind"] == "round_aggregated" and data.get("replies") == 0:
                empty.append(data)
        _, header = client.request("list_runs", limit=1000)
    row: dict[str, Any] = next((r for r in header["runs"] if r["run_id"] == run_id), {})
    _echo(
        f"run {run_id}: {row.get('status', 'unknown')}"
        + (f" ({row['error']})" if row.get("error") else "")
    )
    if empty:
        _report_empty_rounds(empty)
    return 0 if row.get("status") == "finished" and not empty else 1


def _report_empty_rounds(empty: list[dict[str, Any]]) -> None:
    """Say that rounds aggregated nothing, with the first distinct node errors."""
    _echo(f"{len(empty)} round(s) aggregated no reply (first: round {empty[0].get('round')})")
    reasons = dict.fromkeys(r for data in empty for r in (data.get("failed") or {}).values())
    for reason in list(reasons)[:3]:
        _echo(f"  node error: {reason}")


def list_runs(args: argparse.Namespace) -> int:
    """List the runs: status, start, duration, rounds, nodes, outcome."""
    with _client(args) as client:
        try:
            _, header = client.request("list_runs", limit=100)
        except FedzeroError as exc:
            _fail(exc)
    runs = header["runs"]
    if args.as_json:
        _echo(json.dumps(runs, indent=2))
        return 0
    rows: list[list[Cell]] = []
    for r in runs:
        ended = r.get("ended_at") or r.get("now") or time.time()
        rows.append(
            [
                str(r["run_id"]),
                _status(r["status"]),
                str(r.get("app") or "-"),
                _when(r["started_at"]),
                f"{ended - r['started_at']:.1f}",
                str(r.get("rounds_done", 0)),
                str(len(r.get("nodes") or [])),
                (r.get("error") or "")[:80],
            ]
        )
    _table(["run", "status", "app", "started", "secs", "rounds", "nodes", "error"], rows)
    return 0


def show_log(args: argparse.Namespace) -> int:
    """Show a run's log: the ServerApp's output and the link's events for the run."""
    with _client(args) as client:
        try:
            if args.follow:
                for event in client.follow_logs(args.run_id):
                    _echo(json.dumps(event) if args.as_json else _event_line(event))
                return 0
            since = 0
            while True:
                _, header = client.request("logs", run_id=args.run_id, since_id=since, follow=False)
                for event in header["events"]:
                    _echo(json.dumps(event) if args.as_json else _event_line(event))
                    since = event["id"]
                if header["done"]:
                    return 0
        except FedzeroError as exc:
            _fail(exc)


def stop_run(args: argparse.Namespace) -> int:
    """Stop a run: its ServerApp and its ClientApps end, its messages are dropped."""
    with _client(args) as client:
        try:
            _, header = client.request("stop_run", run_id=args.run_id)
        except FedzeroError as exc:
            _fail(exc)
    _echo(f"run {args.run_id}: {header['status']}")
    return 0


def list_nodes(args: argparse.Namespace) -> int:
    """List the nodes the link knows: online or not, last seen, traffic."""
    with _client(args) as client:
        try:
            _, header = client.request("list_nodes")
        except FedzeroError as exc:
            _fail(exc)
    nodes = header["nodes"]
    if args.as_json:
        _echo(json.dumps(nodes, indent=2))
        return 0
    rows: list[list[Cell]] = []
    for n in nodes:
        mb_in, mb_out = (n.get("bytes_in") or 0) / 1e6, (n.get("bytes_out") or 0) / 1e6
        rows.append(
            [
                str(n["node_id"]),
                "yes" if n.get("online") else "no",
                _when(n.get("last_seen")),
                json.dumps(n.get("node_config", {})),
                f"{mb_in:.1f}",
                f"{mb_out:.1f}",
            ]
        )
    _table(["node", "online", "last seen", "config", "MB in", "MB out"], rows)
    return 0


def _table(columns: list[str], rows: list[list[Cell]]) -> None:
    """Draw a table with rich (imported here: only a table needs it); no markup in cells."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns)
    for row in rows:
        table.add_row(*(Text(*c) if isinstance(c, tuple) else Text(c) for c in row))
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


def _status(status: str) -> tuple[str, str]:
    colour = {"finished": "green", "running": "cyan", "failed": "red", "stopped": "yellow"}
    return status, colour.get(status, "magenta")
