"""One identity, one process (issue 10, item 7): a node locks its state directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedzero.core import ConfigurationError, Grid
from fedzero.node import NodeAgent
from tests.apps.echo.echoapp import client as echo
from tests.helpers import ECHO_APP, FAST, processes, socket_dir

pytestmark = pytest.mark.timeout(120)

DEADLINE = 30 * FAST["heartbeat_timeout"]


def test_a_second_node_process_on_one_state_dir_refuses_to_start() -> None:
    with socket_dir() as tmp, processes() as procs:
        procs.link(tmp)
        node = ["-m", "fedzero.node", "--app", str(ECHO_APP), "--link", f"ipc://{tmp}/fleet"]
        node += ["--state-dir", str(tmp / "node")]
        first = procs.spawn(node, tmp / "first.log")
        with Grid(f"ipc://{tmp}/app", connect_timeout=DEADLINE) as grid:
            (first_id,) = grid.get_node_ids(min_nodes=1, timeout=DEADLINE)
            second = subprocess.run(
                [sys.executable, *node],
                capture_output=True,
                text=True,
                timeout=DEADLINE,
                check=False,
            )
            assert second.returncode == 2
            assert second.stderr.startswith("fedzero-node: state_dir: ")
            assert f"in use by another node (pid {first.pid})" in second.stderr
            assert "Traceback" not in second.stderr
            assert grid.get_node_ids(min_nodes=1, timeout=DEADLINE) == [first_id]
        assert first.poll() is None  # the first node was not disturbed


def test_two_agents_in_one_process_cannot_share_a_state_dir(tmp_path: Path) -> None:
    first = NodeAgent(echo, "tcp://127.0.0.1:1", state_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="in use by another node"):
        NodeAgent(echo, "tcp://127.0.0.1:1", state_dir=tmp_path)
    first.drain(0)
    first.run()  # returns at once (drained) and gives the state dir up
    again = NodeAgent(echo, "tcp://127.0.0.1:1", state_dir=tmp_path)  # free again
    again.drain(0)
    again.run()
