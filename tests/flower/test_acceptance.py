"""Issue 13 acceptance apps 1 and 3: Flower apps that run under fedzero after only `flwr` -> `fedzero`.

The apps in ``tests/flower/apps/`` are written for Flower 1.42 (``flwr`` imports,
``[tool.flwr.app]`` pyproject). Each test copies one, rewrites its Python files
with ``sed -E 's/\\bflwr\\b/fedzero/g'`` and nothing else, runs it with
``fedzero local`` (a real link and real node processes on this machine), and
compares the figures its ServerApp writes with Flower's own, recorded below.

Flower's figures were made by running the unmodified apps under Flower 1.42.0's
deployment engine (``flower-superlink``, ``flower-supernode``, ``flwr run``) with
``tests/flower/flower_figures.py`` (torch 2.13.0 on the same machine, load
average ~20). fedzero reached them exactly (every loss and weight sum to the
last bit); the tolerances below only allow float32 summation order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

APPS = Path(__file__).resolve().parent / "apps"
LOCAL = [sys.executable, "-m", "fedzero.core.cli", "local"]

# Flower 1.42.0, `python tests/flower/flower_figures.py mlpfedavg 2` (see the module docstring).
FLOWER_MLPFEDAVG: dict[str, Any] = {
    "central": {
        "0": {"accuracy": 0.671875, "loss": 0.6708924174308777},
        "1": {"accuracy": 0.71875, "loss": 0.6312410831451416},
        "2": {"accuracy": 0.734375, "loss": 0.5999597311019897},
        "3": {"accuracy": 0.765625, "loss": 0.5718114376068115},
    },
    "weight_sums": {
        "0.bias": 0.7685072536114603,
        "0.weight": -1.6868307436816394,
        "2.bias": -0.14045033184811473,
        "2.weight": -1.61662993428763,
    },
}

# Flower 1.42.0, `python tests/flower/flower_figures.py gridquery 3`.
FLOWER_GRIDQUERY: dict[str, Any] = {
    "error_replies": 1,
    "replies": 3,
    "stats": {
        "age": {
            "count": 180.0,
            "hist": [12, 68, 77, 23, 0, 0, 0, 0],
            "mean": 51.926351840307326,
            "std": 17.354512680864048,
        },
        "height": {
            "count": 180.0,
            "hist": [0, 0, 0, 0, 0, 1, 125, 54],
            "mean": 170.22284932899623,
            "std": 8.183661817016542,
        },
    },
}


def _rewritten(app: str, tmp_path: Path) -> Path:
    """Copy ``app`` and run the one rewrite a Flower user makes: sed over its Python files."""
    app_dir = Path(shutil.copytree(APPS / app, tmp_path / app))
    files = [str(p) for p in sorted(app_dir.rglob("*.py"))]
    subprocess.run(["sed", "-E", "-i", r"s/\bflwr\b/fedzero/g", *files], check=True)
    assert not any("flwr" in Path(f).read_text() for f in files)
    return app_dir


def _run(app_dir: Path, nodes: int, tmp_path: Path) -> dict[str, Any]:
    result = tmp_path / "figures.json"
    done = subprocess.run(
        [*LOCAL, str(app_dir), "--nodes", str(nodes), "--run-config", f'result-file="{result}"'],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.exists(), done.stdout[-4000:] + done.stderr[-4000:]
    figures: dict[str, Any] = json.loads(result.read_text())
    return figures


def test_torch_mlp_with_fedavg_and_evaluate_fn_reaches_flowers_figures(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    ours = _run(_rewritten("mlpfedavg", tmp_path), 2, tmp_path)
    assert set(ours["central"]) == set(FLOWER_MLPFEDAVG["central"])
    for rnd, flower in FLOWER_MLPFEDAVG["central"].items():
        assert ours["central"][rnd]["loss"] == pytest.approx(flower["loss"], rel=1e-4), rnd
        assert ours["central"][rnd]["accuracy"] == pytest.approx(flower["accuracy"], abs=1e-6)
    for name, total in FLOWER_MLPFEDAVG["weight_sums"].items():
        assert ours["weight_sums"][name] == pytest.approx(total, rel=1e-4, abs=1e-5), name


def test_raw_grid_queries_reach_flowers_figures(tmp_path: Path) -> None:
    ours = _run(_rewritten("gridquery", tmp_path), 3, tmp_path)
    assert ours["replies"] == FLOWER_GRIDQUERY["replies"] == 3
    assert ours["error_replies"] == FLOWER_GRIDQUERY["error_replies"] == 1
    for feature, flower in FLOWER_GRIDQUERY["stats"].items():
        mine = ours["stats"][feature]
        assert mine["count"] == flower["count"]
        assert mine["hist"] == flower["hist"]
        assert mine["mean"] == pytest.approx(flower["mean"], rel=1e-12)
        assert mine["std"] == pytest.approx(flower["std"], rel=1e-9)
