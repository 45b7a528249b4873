"""``fedzero local``: a whole federation on this machine, for one run of an app.

The link and every node are real processes talking over ``ipc://`` sockets in a
private temporary directory; the ServerApp runs in this process so that its
progress can be shown live. Everything started is stopped at the end, by PID.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import Context, Grid
from .._context import UserConfig
from ..bundles import load_server_app, read_app_spec


class _Display:
    """Turns Grid events into progress bars and one line per reported round."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[tuple[str, str], Any] = {}
        self.failures = 0
        self.reports: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        key = (event.get("message_type", ""), event.get("group_id", ""))
        if event["event"] == "sent":
            for task in self.tasks.values():  # one live bar: the round in flight
                self.progress.remove_task(task)
            self.tasks.clear()
            label = f"{key[0]:<8} round {key[1]}" if key[1] else key[0]
            self.tasks[key] = self.progress.add_task(label, total=event["count"])
        elif event["event"] == "reply" and key in self.tasks:
            self.failures += int(event["error"])
            self.progress.advance(self.tasks[key])
        elif event["event"] == "aggregated" and key in self.tasks:  # one result per round
            self.failures += int(event["failures"])
            self.progress.update(self.tasks[key], completed=event["replies"] + event["failures"])
        elif event["event"] == "report":
            self.reports.append(event)
            shown = "  ".join(f"{k}={_fmt(v)}" for k, v in event["metrics"].items())
            self.progress.console.print(f"round {event['round']:>3}  {escape(shown)}")


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _spawn(procs: list[subprocess.Popen[bytes]], module: str, args: list[str], log: Path) -> None:
    """Start ``python -m module args`` (our own interpreter and modules), logging to ``log``."""
    with log.open("w") as out:
        cmd = [sys.executable, "-m", module, *args, "--log-level", "warning"]
        proc = subprocess.Popen(  # noqa: S603
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        procs.append(proc)


def run_local(
    app_dir: Path,
    num_nodes: int,
    run_config: UserConfig,
    *,
    console: Console | None = None,
    startup_timeout: float = 60.0,
) -> int:
    """Run the app in ``app_dir`` on a fresh local federation; return the exit code."""
    console = console or Console()
    spec = read_app_spec(app_dir)
    server_app = load_server_app(spec)
    config = {**spec.config, **run_config}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fedzero-local-") as tmp, _processes() as procs:
        fleet, app_ep = f"ipc://{tmp}/fleet", f"ipc://{tmp}/app"
        logs = Path(tmp)
        link_flags = {
            "--fleet-address": fleet,
            "--app-address": app_ep,
            "--control-address": f"ipc://{tmp}/control",
            "--state-dir": str(logs / "state"),
            "--http-address": "",
            "--heartbeat-interval": "0.5",
            "--heartbeat-timeout": "3",
        }
        link_args = [*(item for pair in link_flags.items() for item in pair), "--no-warmup"]
        _spawn(procs, "fedzero.link", link_args, logs / "link.log")
        for i in range(num_nodes):
            partition = f"partition-id={i},num-partitions={num_nodes}"
            node_args = ["--app", str(spec.root), "--link", fleet, "--node-config", partition]
            _spawn(procs, "fedzero.node", node_args, logs / f"node-{i}.log")
        console.print(f"[bold]fedzero local[/]: {escape(spec.name)} on {num_nodes} nodes")
        code = _drive(server_app, app_ep, config, num_nodes, console, startup_timeout)
        if code != 0:
            _show_logs(console, logs)
    console.print(f"done in {time.monotonic() - started:.1f}s, exit code {code}")
    return code


def _drive(
    server_app: Any,
    app_ep: str,
    config: UserConfig,
    num_nodes: int,
    console: Console,
    startup_timeout: float,
) -> int:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    display = _Display(progress)
    try:
        with (
            progress,
            Grid(
                app_ep, run_config=config, connect_timeout=startup_timeout, listeners=[display]
            ) as grid,
        ):
            online = grid.get_node_ids(min_nodes=num_nodes, timeout=startup_timeout)
            if len(online) < num_nodes:
                console.print(f"[red]only {len(online)} of {num_nodes} nodes came up[/]")
                return 1
            context = Context(run_id=grid.run_id, node_id=0, run_config=grid.run_config)
            server_app(grid, context)
    except Exception:
        console.print("[red]the ServerApp failed:[/]")
        console.print(escape(traceback.format_exc()))
        return 1
    _summary(console, display)
    return 0


def _summary(console: Console, display: _Display) -> None:
    rounds = len(display.reports)
    last = display.reports[-1]["metrics"] if display.reports else {}
    shown = "  ".join(f"{k}={_fmt(v)}" for k, v in last.items())
    console.print(
        f"[green]run finished[/]: {rounds} rounds reported, "
        f"{display.failures} failed replies" + (f"; final {escape(shown)}" if shown else "")
    )


def _show_logs(console: Console, logs: Path) -> None:
    for path in sorted(logs.glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()[-15:]
        if lines:
            console.print(f"[dim]--- last lines of {path.name}[/]")
            console.print(escape("\n".join(lines)))
