"""A real link with a state dir and real bundle-mode nodes, as processes."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedzero.core.cli import ControlClient
from tests.helpers import Procs, processes, socket_dir

SERVER = """
import numpy as np
from fedzero.aggregation import FedAvg
from fedzero.core import ArrayRecord, ServerApp

app = ServerApp()
{import_error}

@app.main()
def main(grid, context):
    rounds = int(context.run_config.get("num-rounds", 3))
    fail_at = int(context.run_config.get("fail-at", 0))

    def central(server_round, arrays):
        if fail_at and server_round == fail_at:
            raise RuntimeError(f"boom in round {{server_round}}")
        return {{"w": float(arrays["w"][0])}}

    FedAvg(min_available_nodes=int(context.run_config.get("nodes", 1)), fraction_evaluate=0.0).start(
        grid, ArrayRecord({{"w": np.zeros(4, np.float32)}}), num_rounds=rounds, evaluate_fn=central
    )
"""

CLIENT = """
import os, threading
from fedzero.core import ArrayRecord, ClientApp, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(msg, context):
    step = float(context.run_config.get("step", 1.0))
    if context.run_config.get("slow"):
        threading.Event().wait(float(context.run_config["slow"]))  # simulated training time
    if context.run_config.get("crash-once") and not os.path.exists(context.run_config["crash-once"]):
        open(context.run_config["crash-once"], "w").close()
        os._exit(3)  # the worker process dies in the middle of a task
    w = msg.content.array_records["arrays"]["w"] + step * (1 + int(context.node_config["partition-id"]))
    return msg.create_reply(RecordDict({{"arrays": ArrayRecord({{"w": w}}),
                                        "metrics": MetricRecord({{"num-examples": 1, "pid": os.getpid()}})}}))
"""


def make_app(root: Path, name: str, *, import_error: bool = False) -> Path:
    """Write a small app project; ``import_error`` makes its ServerApp fail on import."""
    folder = root / name
    (folder / name).mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [project]
        name = "{name}"
        version = "1.0.0"

        [tool.fedzero.app]
        serverapp = "{name}.server:app"
        clientapp = "{name}.client:app"
        """)
    )
    (folder / name / "__init__.py").write_text("")
    error = "raise ImportError('this ServerApp cannot be imported')" if import_error else ""
    (folder / name / "server.py").write_text(SERVER.format(import_error=error))
    (folder / name / "client.py").write_text(CLIENT.format())
    return folder


@dataclass
class Federation:
    tmp: Path
    procs: Procs

    @property
    def control(self) -> str:
        return f"ipc://{self.tmp}/control"

    def client(self) -> ControlClient:
        return ControlClient(self.control, timeout=30)


@pytest.fixture
def federation() -> Iterator[Federation]:
    """A link (state dir, no kernel warm-up) and four nodes that run apps from bundles."""
    with socket_dir() as tmp, processes() as procs:
        procs.link(tmp)
        node = ["-m", "fedzero.node", "--link", f"ipc://{tmp}/fleet", "--log-level", "info"]
        for i in range(4):
            own = ["--state-dir", str(tmp / f"node{i}"), "--node-config", f"partition-id={i}"]
            procs.spawn([*node, *own], tmp / f"node{i}.log")
        yield Federation(tmp, procs)
