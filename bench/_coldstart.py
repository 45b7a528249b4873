"""``fedzero-bench coldstart``: a fresh install's first aggregated round.

Runs ``fedzero local APP --nodes N --run-config num-rounds=1`` as a fresh
process, with ``FEDZERO_CACHE_DIR`` pointing at an empty temporary directory
(no compiled kernel anywhere: what a new install, or a new version, sees), then
again with the cache that run left behind (a restart). For each it reports the
seconds from starting the command to its first aggregated round being reported
(the ``round 1`` line: link and nodes started, the round sent, trained,
aggregated on the link and evaluated) and to the command's exit (everything
stopped).

Reference: the same command on the warm cache, in the same run. The cold run
compiles only the kernels the round needs, in the background, while the
round's FedAvg folds in NumPy (see ``fedzero.aggregation.kernels``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._stats import machine

__all__ = ["coldstart_command", "run_coldstart_bench"]

GOAL_S = 15.0
"""Issue 12 item 3: fresh install -> first aggregated FedAvg round of the quickstart."""


def _one(app: Path, nodes: int, cache: Path, timeout: float) -> dict[str, Any]:
    """Run ``fedzero local`` once with ``cache`` as its kernel cache; time its milestones."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["FEDZERO_CACHE_DIR"] = str(cache)
    env["COLUMNS"] = "200"
    cmd = [sys.executable, "-m", "fedzero.core.cli", "local", str(app), "--nodes", str(nodes)]
    cmd += ["--run-config", "num-rounds=1"]
    start = time.perf_counter()
    first_round = None
    lines: list[str] = []
    with subprocess.Popen(  # noqa: S603 - our interpreter, our module
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None  # noqa: S101 - PIPE above
        for line in proc.stdout:
            lines.append(line.rstrip())
            if first_round is None and line.lstrip().startswith("round"):
                first_round = time.perf_counter() - start
            if time.perf_counter() - start > timeout:
                proc.kill()
        code = proc.wait()
    total = time.perf_counter() - start
    if code != 0 or first_round is None:
        tail = "\n".join(lines[-15:])
        msg = f"fedzero local exited {code} without a round (after {total:.1f}s):\n{tail}"
        raise RuntimeError(msg)
    cached = sum(1 for _ in (cache / "numba").rglob("*.nbi")) if (cache / "numba").exists() else 0
    return {"first_round_s": first_round, "total_s": total, "cached_kernel_indexes": cached}


def run_coldstart_bench(
    app: Path = Path("examples/quickstart"), nodes: int = 2, runs: int = 1, timeout: float = 600.0
) -> dict[str, Any]:
    """Cold (empty kernel cache) and warm runs of the quickstart's first round.

    Returns:
        A JSON-ready dict: settings, machine, the cold and warm runs, the goal.

    Raises:
        ValueError: If ``app`` is not an app directory.
    """
    if not (app / "pyproject.toml").is_file():
        msg = f"{app} is not an app directory (no pyproject.toml); pass --app"
        raise ValueError(msg)
    cold, warm = [], []
    load_before = os.getloadavg()[0]
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="fedzero-coldstart-") as tmp:
            cold.append(_one(app, nodes, Path(tmp), timeout))
            warm.append(_one(app, nodes, Path(tmp), timeout))
    worst = max(r["first_round_s"] for r in cold)
    return {
        "benchmark": "coldstart",
        "app": str(app),
        "nodes": nodes,
        "runs": runs,
        "command": f"fedzero local {app} --nodes {nodes} --run-config num-rounds=1",
        "machine": machine(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "cold": cold,
        "warm": warm,
        "goal_first_round_s": GOAL_S,
        "cold_first_round_worst_s": worst,
        "meets_goal": worst <= GOAL_S,
    }


def coldstart_command(app: Path, nodes: int, runs: int, as_json: bool) -> int:
    """Run the cold-start benchmark and print a summary (or JSON).

    Returns:
        The process exit code: 0 on success, 2 on invalid arguments, 1 if a run failed.
    """
    try:
        report = run_coldstart_bench(app, nodes, runs)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}")
        return 1
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    load = report["load_average_1min"]
    print(f"coldstart: {report['command']}, {runs} run(s), goal <= {GOAL_S:.0f} s")
    print(f"  load average (1 min) {load['before']:.1f} before, {load['after']:.1f} after")
    for kind in ("cold", "warm"):
        for r in report[kind]:
            print(
                f"  {kind} cache: first aggregated round {r['first_round_s']:.1f} s, "
                f"command done {r['total_s']:.1f} s"
            )
    return 0
