"""Child processes for ``fedzero-bench round``: started by PID, always stopped by PID.

Also writes the benchmark's tiny app project (a ClientApp that returns the
received arrays + 1) and reads a process's peak resident memory.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Final

from ._stats import BenchError

_APP_PYPROJECT: Final = """\
[project]
name = "fedzero-bench-round-app"
version = "1.0.0"
description = "fedzero-bench round: a ClientApp that returns the received arrays + 1"

[tool.fedzero.app]
serverapp = "fedzero_bench_round_app.app:server"
clientapp = "fedzero_bench_round_app.app:app"
"""


def write_app_project(root: Path) -> Path:
    """Write the benchmark's app project under ``root``; return its folder.

    The app module is a copy of :mod:`fedzero.bench._round_app` (a real module,
    linted and type-checked), so nodes load it without importing ``fedzero.bench``.
    """
    project = root / "round-app"
    package = project / "fedzero_bench_round_app"
    package.mkdir(parents=True)
    (project / "pyproject.toml").write_text(_APP_PYPROJECT, encoding="utf-8")
    (package / "__init__.py").write_text("", encoding="utf-8")
    source = resources.files(__package__).joinpath("_round_app.py").read_text(encoding="utf-8")
    (package / "app.py").write_text(source, encoding="utf-8")
    return project


def peak_rss_bytes(pid: int) -> int:
    """Return a live process's peak resident set size (``VmHWM``), in bytes.

    Raises:
        RuntimeError: the process is gone or ``/proc`` has no ``VmHWM`` (not Linux).
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError as exc:
        raise BenchError(f"cannot read /proc/{pid}/status: {exc}") from exc
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise BenchError(f"/proc/{pid}/status: unexpected VmHWM unit {unit!r}")
            return int(value) * 1024
    raise BenchError(f"/proc/{pid}/status has no VmHWM line")


class Processes:
    """Child processes, each logging to its own file, all stopped on exit.

    Stopping sends SIGTERM to each one still running, waits for all of them
    with one shared deadline, and kills (then reaps) those that remain. It runs
    on any exit of the ``with`` block, KeyboardInterrupt included.

    Args:
        log_dir: where ``<name>.log`` files go.
        stop_timeout: seconds to wait after SIGTERM before SIGKILL.
    """

    def __init__(self, log_dir: Path, stop_timeout: float = 10.0) -> None:
        self.log_dir = log_dir
        self.stop_timeout = stop_timeout
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(*self._procs)

    def spawn(self, name: str, module: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start ``python -m module *args`` as ``name`` (output to ``name.log``)."""
        if name in self._procs:
            raise ValueError(f"a process named {name!r} was already started")
        with open(self.log_dir / f"{name}.log", "wb") as log:
            # Our own interpreter running our own modules: the arguments are ours.
            proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", module, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._procs[name] = proc
        return proc

    def pids(self) -> dict[str, int]:
        """Return the PIDs of the processes started and not yet stopped, by name."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def check_alive(self) -> None:
        """Raise if a started process has exited (with the end of its log).

        Raises:
            RuntimeError: naming the process, its exit code and its last log lines.
        """
        for name, proc in self._procs.items():
            code = proc.poll()
            if code is not None:
                raise BenchError(f"{name} exited with code {code}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 20) -> str:
        """Return the last ``lines`` lines of a process's log."""
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, *names: str) -> None:
        """Stop the named processes: SIGTERM, wait, SIGKILL on timeout."""
        procs = [self._procs[name] for name in names if name in self._procs]
        try:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + self.stop_timeout
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(0.01, deadline - time.monotonic()))
        finally:  # even when interrupted while waiting
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for name in names:
                self._procs.pop(name, None)
