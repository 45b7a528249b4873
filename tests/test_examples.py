"""Every example runs, end to end, through `fedzero local` (untested examples rot)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def _local(app: str, nodes: int, *config: str) -> str:
    args = [
        sys.executable,
        "-m",
        "fedzero.core.cli",
        "local",
        str(EXAMPLES / app),
        "--nodes",
        str(nodes),
    ]
    for item in config:
        args += ["--run-config", item]
    done = subprocess.run(args, capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.timeout(180)
def test_quickstart_learns() -> None:
    out = _local("quickstart", 4)
    accuracies = [float(a) for a in re.findall(r"accuracy=([0-9.]+)", out)]
    assert len(accuracies) >= 10
    assert accuracies[-1] > 0.9, out


@pytest.mark.timeout(180)
def test_pytorch_example_runs() -> None:
    pytest.importorskip("torch")
    out = _local("pytorch", 2, "num-rounds=2", "local-epochs=1")
    assert "run finished" in out
    assert re.findall(r"round +2 +accuracy=", out), out
