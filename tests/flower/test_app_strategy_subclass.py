"""Acceptance app 2 of issue 13: a Flower FedAvg subclass runs unchanged but for its imports.

``apps/strategysubclass`` is a Flower 1.42 app (``flwr`` imports, ``[tool.flwr.app]``):
a FedAvg subclass overriding ``configure_train`` (a halving learning rate) and
``aggregate_train`` (a log of the replies it receives), with a custom
``train_metrics_aggr_fn``. The test rewrites ``flwr`` to ``fedzero`` with the
issue's sed and runs it with ``fedzero local`` on three nodes. Flower's figures
below are what the same app gives under Flower 1.42.0 (its own strategy and
ClientApp code, called in one process: ``tests/flower_numerics/
flower_apps_inprocess_script.txt apps/strategysubclass 3`` in a venv with
``flwr==1.42.0``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(240)

APPS = Path(__file__).parent / "apps"

FLOWER_FIGURES: dict[str, Any] = {
    "w": [0.4585045576095581, -1.2052032947540283, 0.44384485483169556],
    "b": [0.016433702781796455],
    "received": [{"round": r, "examples": [40, 50, 60]} for r in (1, 2, 3)],
    "train": {
        "1": {
            "loss-mean": 1.7362925132115683,
            "loss-max": 1.7944358587265015,
            "nodes": 3,
            "lr": 0.05,
        },
        "2": {
            "loss-mean": 1.0881083408991497,
            "loss-max": 1.2015279531478882,
            "nodes": 3,
            "lr": 0.025,
        },
        "3": {
            "loss-mean": 0.8736787080764771,
            "loss-max": 1.0160632133483887,
            "nodes": 3,
            "lr": 0.0125,
        },
    },
    "evaluate": {
        "1": {"mse": 1.8323616504669191},
        "2": {"mse": 1.1234498023986816},
        "3": {"mse": 0.8887485027313233},
    },
}


def run_flower_app(name: str, tmp_path: Path, nodes: int = 3) -> dict[str, Any]:
    """Copy ``apps/<name>``, rewrite ``flwr`` to ``fedzero`` (sed -E), run it, return its figures."""
    app_dir = shutil.copytree(APPS / name, tmp_path / name)
    sources = [str(p) for p in app_dir.rglob("*.py")]
    subprocess.run(["sed", "-i", "-E", r"s/\bflwr\b/fedzero/g", *sources], check=True)
    result = tmp_path / "figures.json"
    args = [sys.executable, "-m", "fedzero.core.cli", "local", str(app_dir), "--nodes", str(nodes)]
    args += ["--run-config", f'result-file="{result}"']
    done = subprocess.run(args, capture_output=True, text=True, timeout=200, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures: dict[str, Any] = json.loads(result.read_text())
    return figures


def assert_figures_match(got: Any, want: Any, path: str = "") -> None:
    """Equal structure; numbers within float32 rounding (the models are float32)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), path
        assert sorted(got) == sorted(want), path
        for key in want:
            assert_figures_match(got[key], want[key], f"{path}/{key}")
    elif isinstance(want, list):
        assert isinstance(got, list), path
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_figures_match(g, w, f"{path}[{i}]")
    else:
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7, err_msg=path)


def test_fedavg_subclass_reaches_flowers_figures(tmp_path: Path) -> None:
    assert_figures_match(run_flower_app("strategysubclass", tmp_path), FLOWER_FIGURES)
