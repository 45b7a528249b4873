"""``fedzero-bench startup``: what starting fedzero costs, next to a bare interpreter.

Every figure is the median wall time of N fresh processes of each command, the
commands interleaved (one of each per pass) so that a busy machine slows them
alike, next to ``python -c pass`` and ``python -c "import numpy"`` measured in
the same passes:

- ``import fedzero.core`` and the names a ClientApp and a ServerApp import;
- ``fedzero --help`` and ``fedzero ls`` (against a real link started here,
  with ``--no-warmup`` so that no kernel compiles while we measure);
- the resident memory of a real ``fedzero-node`` process idling on that link
  (registered, heartbeating, no run), and its peak.

``python -X importtime`` names the third-party packages each command loads and
what they cost (one extra run each; the figures above do not include it).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from fedzero.core import FedzeroTimeoutError, Grid

from ._round_procs import Processes, peak_rss_bytes
from ._stats import BenchError, machine

_CLIENT_NAMES: Final = (
    "ArrayRecord, ClientApp, ConfigRecord, Context, Message, MetricRecord, RecordDict"
)
_GOALS: Final = {
    "core_vs_numpy": 2.0,  # import fedzero.core <= 2x import numpy
    "cli_over_python_s": 0.5,  # fedzero --help / ls <= python -c pass + 0.5 s
    "node_idle_rss_mb": 60.0,
}
_NODE_SETTLE_S: Final = 3.0  # idle time (a few heartbeats) before the node's RSS is read


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _fedzero(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("fedzero")
    if script.exists():  # the console script, as a user starts it
        return [str(script), *args]
    return _python(
        f"import sys; sys.argv[1:] = {list(args)!r}; from fedzero.core.cli import run; run()"
    )


def _commands(control: str | None) -> dict[str, list[str]]:
    commands = {
        "python -c pass": _python("pass"),
        "import numpy": _python("import numpy"),
        "import fedzero.core": _python("import fedzero.core"),
        "ClientApp imports": _python(f"from fedzero.core import {_CLIENT_NAMES}"),
        "ServerApp imports": _python("from fedzero.core import Grid, ServerApp, RecordDict"),
        "fedzero --help": _fedzero("--help"),
    }
    if control is not None:
        commands["fedzero ls"] = _fedzero("ls", "--link", control)
    return commands


def _run_once(argv: list[str]) -> float:
    start = time.perf_counter()
    # Our own interpreter and console script with our own arguments.
    done = subprocess.run(argv, capture_output=True, check=False)  # noqa: S603
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"{argv[-1]!r} exited with {done.returncode}: {done.stderr[-2000:]!r}")
    return elapsed


def _time_commands(commands: dict[str, list[str]], runs: int) -> dict[str, dict[str, float]]:
    for argv in commands.values():  # warm the page cache and bytecode caches
        _run_once(argv)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(_run_once(argv))
    return {
        name: {"median": statistics.median(s), "min": min(s), "max": max(s), "runs": len(s)}
        for name, s in samples.items()
    }


def import_costs(argv: list[str], top: int = 8) -> dict[str, float]:
    """Seconds each package's modules take to import in ``argv`` (``-X importtime`` self times)."""
    if argv[0] == sys.executable:
        argv = [sys.executable, "-X", "importtime", *argv[1:]]
    else:  # a console script: run its module under our interpreter
        argv = [sys.executable, "-X", "importtime", *_fedzero_module_argv(argv[1:])]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    costs: dict[str, float] = {}
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        package = parts[2].strip().split(".")[0]
        if not package.startswith("_") and package not in sys.stdlib_module_names:
            costs[package] = costs.get(package, 0.0) + int(parts[0].split(":")[-1]) / 1e6
    return dict(sorted(costs.items(), key=lambda kv: -kv[1])[:top])


def _fedzero_module_argv(args: list[str]) -> list[str]:
    return ["-c", f"import sys; sys.argv[1:] = {args!r}; from fedzero.core.cli import run; run()"]


def _start_link(procs: Processes, root: Path) -> dict[str, str]:
    addresses = {name: f"ipc://{root}/{name}" for name in ("fleet", "app", "control")}
    procs.spawn(
        "link",
        "fedzero.link",
        [
            *("--fleet-address", addresses["fleet"], "--app-address", addresses["app"]),
            *("--control-address", addresses["control"], "--http-address", ""),
            *("--state-dir", str(root / "state"), "--no-warmup", "--log-level", "warning"),
        ],
    )
    return addresses


def _node_rss(procs: Processes, root: Path, fleet: str, app: str) -> dict[str, float]:
    """Start a node, wait until the link has it online, let it idle, read its memory."""
    node = procs.spawn(
        "node",
        "fedzero.node",
        ["--link", fleet, "--state-dir", str(root / "node"), "--log-level", "warning"],
    )
    deadline = time.monotonic() + 120.0
    with Grid(app, connect_timeout=60.0) as grid:
        while not grid.get_node_ids(min_nodes=1, timeout=1.0):
            procs.check_alive()
            if time.monotonic() > deadline:
                raise FedzeroTimeoutError("the node did not come online in 120 s")
    settle = time.monotonic() + _NODE_SETTLE_S
    while (left := settle - time.monotonic()) > 0:  # idle: nothing to wait for but time
        procs.check_alive()
        time.sleep(min(left, 0.5))
    status = Path(f"/proc/{node.pid}/status").read_text(encoding="ascii").splitlines()
    rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {"node_idle_rss_mb": rss_kb / 1024, "node_peak_rss_mb": peak_rss_bytes(node.pid) / 2**20}


def run_startup_bench(runs: int = 10, with_link: bool = True) -> dict[str, Any]:
    """Measure the start-up costs (see the module docstring); return the report.

    Args:
        runs: fresh processes per command.
        with_link: also start a link and a node for ``fedzero ls`` and node memory.

    Raises:
        BenchError: a command failed, or the link or node died.
    """
    with tempfile.TemporaryDirectory(prefix="fedzero-bench-startup-") as tmp:
        root = Path(tmp)
        with Processes(root) as procs:
            addresses = _start_link(procs, root) if with_link else None
            control = addresses["control"] if addresses else None
            commands = _commands(control)
            if addresses is not None:  # the link answers before we time anything
                _wait_answering(commands["fedzero ls"], procs)
            timings = _time_commands(commands, runs)
            imports = {name: import_costs(argv) for name, argv in commands.items()}
            node = _node_rss(procs, root, addresses["fleet"], addresses["app"]) if addresses else {}
    return _report(timings, imports, node, runs)


def _wait_answering(argv: list[str], procs: Processes) -> None:
    deadline = time.monotonic() + 60.0
    while True:
        done = subprocess.run(argv, capture_output=True, check=False)  # noqa: S603
        if done.returncode == 0:
            return
        procs.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"the link never answered fedzero ls: {done.stderr[-2000:]!r}")


def _report(
    timings: dict[str, dict[str, float]],
    imports: dict[str, dict[str, float]],
    node: dict[str, float],
    runs: int,
) -> dict[str, Any]:
    base = timings["python -c pass"]["median"]
    numpy_import = timings["import numpy"]["median"] - base
    derived: dict[str, float] = {
        name + " over python": t["median"] - base
        for name, t in timings.items()
        if name != "python -c pass"
    }
    ratios = {
        "core_vs_numpy": (timings["import fedzero.core"]["median"] - base) / numpy_import,
        "client_imports_vs_numpy": (timings["ClientApp imports"]["median"] - base) / numpy_import,
        "server_imports_vs_numpy": (timings["ServerApp imports"]["median"] - base) / numpy_import,
    }
    goals = {
        "import fedzero.core <= 2x import numpy": ratios["core_vs_numpy"]
        <= _GOALS["core_vs_numpy"],
        "fedzero --help <= python + 0.5 s": derived["fedzero --help over python"]
        <= _GOALS["cli_over_python_s"],
    }
    if "fedzero ls over python" in derived:
        goals["fedzero ls <= python + 0.5 s"] = (
            derived["fedzero ls over python"] <= _GOALS["cli_over_python_s"]
        )
    if node:
        goals["node idle RSS <= 60 MB"] = node["node_idle_rss_mb"] <= _GOALS["node_idle_rss_mb"]
    return {
        "benchmark": "startup",
        "runs": runs,
        "seconds": timings,
        "seconds_over_python": derived,
        "import_ratios": ratios,
        "import_costs_s": imports,
        **node,
        "goals": goals,
        "machine": {**machine(), "load_avg": os.getloadavg()},
    }


def print_startup_report(report: dict[str, Any]) -> None:
    """Print the report as a table."""
    print(f"start-up, median of {report['runs']} fresh processes each (wall time):")
    for name, t in report["seconds"].items():
        over = report["seconds_over_python"].get(f"{name} over python")
        extra = f"  (+{over:.3f} s over python)" if over is not None else ""
        print(f"  {name:<22} {t['median']:.3f} s  [{t['min']:.3f}-{t['max']:.3f}]{extra}")
    for name, ratio in report["import_ratios"].items():
        print(f"  {name:<26} {ratio:.2f}x")
    if "node_idle_rss_mb" in report:
        print(
            f"  fedzero-node idle RSS     {report['node_idle_rss_mb']:.1f} MB "
            f"(peak {report['node_peak_rss_mb']:.1f} MB)"
        )
    for goal, met in report["goals"].items():
        print(f"  {'met ' if met else 'MISS'} {goal}")
