"""``fedzero run --follow`` as a user runs it: per-round metrics shown, failures visible."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.multirun.conftest import Federation

pytestmark = pytest.mark.timeout(300)

SERVER = """
import numpy as np
from fedzero.aggregation import FedAvg
from fedzero.core import ArrayRecord, ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    def central(server_round, arrays):
        return {"w": float(arrays["w"][0])}

    FedAvg(min_available_nodes=2, fraction_evaluate=0.0).start(
        grid,
        ArrayRecord({"w": np.zeros(4, np.float32)}),
        num_rounds=int(context.run_config["num-rounds"]),
        evaluate_fn=central,
    )
"""

CLIENT = """
from fedzero.core import ArrayRecord, ClientApp, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(msg, context):
    if context.run_config["fail"]:
        raise ValueError("the data is not there")
    w = msg.content.array_records["arrays"]["w"] + 1
    metrics = MetricRecord({"num-examples": 1})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord({"w": w}), "metrics": metrics}))
"""


def _app(root: Path) -> Path:
    folder = root / "followapp"
    (folder / "followapp").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent("""
        [project]
        name = "followapp"
        version = "1.0.0"

        [tool.fedzero.app]
        serverapp = "followapp.server:app"
        clientapp = "followapp.client:app"

        [tool.fedzero.app.config]
        num-rounds = 2
        fail = false
        """)
    )
    (folder / "followapp" / "__init__.py").write_text("")
    (folder / "followapp" / "server.py").write_text(SERVER)
    (folder / "followapp" / "client.py").write_text(CLIENT)
    return folder


def _follow(federation: Federation, *config: str) -> subprocess.CompletedProcess[str]:
    overrides = [item for c in config for item in ("--run-config", c)]
    cmd = [sys.executable, "-m", "fedzero.core.cli", "run", str(_app(federation.tmp))]
    cmd += ["--follow", "--link", federation.control, *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)


def test_follow_shows_each_rounds_metrics(federation: Federation) -> None:
    done = _follow(federation)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any("round   1  w=1.0000" in line for line in lines), done.stdout
    assert any("round   2  w=2.0000" in line for line in lines), done.stdout
    assert any("aggregated (fedavg): 4 replies, 0 failed" in line for line in lines), done.stdout


def test_follow_fails_when_rounds_aggregate_nothing_and_names_the_error(
    federation: Federation,
) -> None:
    done = _follow(federation, "fail=true")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "round(s) aggregated no reply" in done.stdout
    assert "node error: ValueError: the data is not there" in done.stdout
