"""``fedzero local``: a whole federation on this machine, for one run of an app.

The link and every node are real processes talking over ``ipc://`` sockets in a
private temporary directory; the ServerApp runs in this process so that its
progress can be shown live. Start-up goes by readiness, not by delays: the link
says it is ready over the systemd notify protocol (a datagram socket this
command owns), then the run waits until every node registered, naming what it
waits for when that takes long. Everything started is stopped at the end, by
PID; Ctrl-C stops everything within two seconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
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

from .. import ConfigurationError, Context, FedzeroTimeoutError, Grid
from .._context import UserConfig
from ..bundles import load_server_app, read_app_spec
from ._local_display import Display, progress_bar

_STOP_GRACE = 1.5
"""Seconds the link and nodes get to drain after SIGTERM before SIGKILL."""
_PR_SET_PDEATHSIG = 1  # prctl(2)
_SAY_AFTER = 1.0
"""Seconds of waiting after which ``fedzero local`` says what it is waiting for."""


class _Federation:
    """The link and node processes of one ``fedzero local`` run, by PID."""

    def __init__(self, tmp: Path, console: Console) -> None:
        self.tmp = tmp
        self.console = console
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp / "notify"))

    def spawn(self, name: str, module: str, args: list[str], env: dict[str, str]) -> None:
        """Start ``python -m module args`` in its own session (Ctrl-C is ours to handle)."""
        with (self.tmp / f"{name}.log").open("w") as out:
            self.procs[name] = subprocess.Popen(  # noqa: S603 - our interpreter, our module
                [sys.executable, "-m", module, *args, "--log-level", "warning"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def check_alive(self) -> None:
        """Raise if a process exited before the run ended."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ConfigurationError(f"the {name} exited with code {proc.returncode}")

    def wait_link_ready(self, deadline: float) -> None:
        """Wait for the link's READY=1, showing its STATUS while it starts."""
        status = "starting"
        with self.console.status("") as shown:
            started = time.monotonic()
            while (now := time.monotonic()) < deadline:
                readable, _, _ = select.select([self.notify], [], [], min(0.2, deadline - now))
                if readable:
                    fields = _notify_fields(self.notify.recv(4096))
                    status = fields.get("STATUS", status)
                    if fields.get("READY") == "1":
                        return
                self.check_alive()
                if time.monotonic() - started > _SAY_AFTER:
                    shown.update(f"waiting for the link to start ({escape(status)})...")
        raise FedzeroTimeoutError(f"the link was not ready in time (last status: {status})")

    def stop(self, grace: float) -> None:
        """SIGTERM every process, SIGKILL what is left after ``grace`` seconds."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.notify.close()

    def show_logs(self) -> None:
        """Print the last lines of every process's log."""
        for path in sorted(self.tmp.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            if lines:
                self.console.print(f"[dim]--- last lines of {path.name}[/]")
                self.console.print(escape("\n".join(lines)))


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when this command dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _notify_fields(datagram: bytes) -> dict[str, str]:
    fields = {}
    for line in datagram.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


def check_run_config(overrides: UserConfig, known: UserConfig) -> None:
    """Refuse ``--run-config`` keys the app does not declare, listing the ones it does.

    Raises:
        ConfigurationError: a key is not in the app's ``[tool.fedzero.app.config]``.
    """
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        keys = ", ".join(sorted(known)) or "(none)"
        raise ConfigurationError(
            f"unknown run-config key(s) {', '.join(unknown)}; the app's keys are: {keys}"
        )


@contextlib.contextmanager
def _federation(console: Console) -> Iterator[_Federation]:
    with tempfile.TemporaryDirectory(prefix="fedzero-local-") as tmp:
        fed = _Federation(Path(tmp), console)
        try:
            yield fed
        except KeyboardInterrupt:
            nodes = len(fed.procs) - 1
            console.print(f"[yellow]interrupted[/]: stopping the link and {nodes} nodes")
            raise
        finally:  # whatever ends this command, nothing it started outlives it
            fed.stop(_STOP_GRACE)


def run_local(
    app_dir: Path,
    num_nodes: int,
    run_config: UserConfig,
    *,
    console: Console | None = None,
    startup_timeout: float = 300.0,
) -> int:
    """Run the app in ``app_dir`` on a fresh local federation; return the exit code.

    Raises:
        ConfigurationError: the app or the run config is not valid.
        KeyboardInterrupt: Ctrl-C (everything started is stopped first).
    """
    console = console or Console()
    spec = read_app_spec(app_dir)
    check_run_config(run_config, spec.config)
    server_app = load_server_app(spec)
    config = {**spec.config, **run_config}
    started = time.monotonic()
    with _federation(console) as fed:
        tmp = fed.tmp
        fleet, app_ep = f"ipc://{tmp}/fleet", f"ipc://{tmp}/app"
        link_flags = {
            "--fleet-address": fleet,
            "--app-address": app_ep,
            "--control-address": f"ipc://{tmp}/control",
            "--state-dir": str(tmp / "state"),
            "--http-address": "",
        }
        link_args = [*(item for pair in link_flags.items() for item in pair), "--no-warmup"]
        fed.spawn("link", "fedzero.link", link_args, {"NOTIFY_SOCKET": str(tmp / "notify")})
        for i in range(num_nodes):
            partition = f"partition-id={i},num-partitions={num_nodes}"
            node_args = ["--app", str(spec.root), "--link", fleet, "--node-config", partition]
            fed.spawn(f"node-{i}", "fedzero.node", node_args, {})
        console.print(f"[bold]fedzero local[/]: {escape(spec.name)} on {num_nodes} nodes")
        code = _drive(fed, server_app, app_ep, config, num_nodes, started + startup_timeout)
        if code != 0:
            fed.show_logs()
    console.print(f"done in {time.monotonic() - started:.1f}s, exit code {code}")
    return code


def _drive(
    fed: _Federation, server_app: Any, app_ep: str, config: UserConfig, nodes: int, deadline: float
) -> int:
    console = fed.console
    progress = progress_bar(console)
    display = Display(progress)
    try:
        fed.wait_link_ready(deadline)
        # Our own supervision sees a dead link at once; the Grid's silence budget
        # only has to ride out a starved machine.
        grid = Grid(app_ep, run_config=config, heartbeat_timeout=60.0, listeners=[display])
        with grid:
            _wait_for_nodes(fed, grid, nodes, deadline)
            context = Context(run_id=grid.run_id, node_id=0, run_config=grid.run_config)
            with progress:
                server_app(grid, context)
    except (ConfigurationError, FedzeroTimeoutError) as exc:
        console.print(f"[red]fedzero local[/]: {escape(str(exc))}")
        return 1
    except Exception:
        console.print("[red]the ServerApp failed:[/]")
        console.print(escape(traceback.format_exc()))
        return 1
    return display.verdict(console)


def _wait_for_nodes(fed: _Federation, grid: Grid, nodes: int, deadline: float) -> None:
    started = time.monotonic()
    with fed.console.status("") as shown:
        while True:
            online = grid.get_node_ids(min_nodes=nodes, timeout=1.0)
            if len(online) >= nodes:
                return
            fed.check_alive()
            if time.monotonic() >= deadline:
                raise FedzeroTimeoutError(f"only {len(online)} of {nodes} nodes registered")
            if time.monotonic() - started > _SAY_AFTER:
                shown.update(f"{len(online)}/{nodes} nodes registered...")
