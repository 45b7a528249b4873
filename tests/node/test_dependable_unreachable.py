"""A node that cannot reach its link says so, with the address (issue 10, item 5)."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time

import pytest

from tests.helpers import ECHO_APP, socket_dir

pytestmark = pytest.mark.timeout(120)

# The node's own reconnect back-off (0.1 s doubling to 10 s) brings the fifth
# unanswered hello within ~6 s; the bound leaves room for a starved machine.
DEADLINE = 60.0


def test_a_node_that_cannot_reach_its_link_warns_with_the_address() -> None:
    with socket_dir() as tmp:
        address = f"ipc://{tmp}/nobody-listens-here"
        cmd = [sys.executable, "-m", "fedzero.node", "--app", str(ECHO_APP), "--link", address]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as node:
            try:
                warning = _first_event(node, "link_unreachable")
            finally:
                node.kill()
                node.wait()
    assert warning["link"] == address
    assert warning["level"] == "warning"
    assert warning["attempts"] >= 5
    assert "fleet address" in warning["advice"]


def _first_event(node: subprocess.Popen[bytes], event: str) -> dict[str, object]:
    """The node's first JSON log line with ``event`` (its stdout is no terminal: JSON)."""
    assert node.stdout is not None
    deadline = time.monotonic() + DEADLINE
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([node.stdout], [], [], left)
        line = node.stdout.readline() if readable else b""
        if not line:
            break
        record = json.loads(line)
        if record.get("event") == event:
            return dict(record)
    raise AssertionError(f"the node logged no {event!r} within {DEADLINE} s")


def test_a_link_address_zeromq_cannot_use_is_one_line_and_exit_2() -> None:
    cmd = [sys.executable, "-m", "fedzero.node", "--app", str(ECHO_APP)]
    cmd += ["--link", "tcp://127.0.0.1:no-port"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("fedzero-node: cannot connect to the link at tcp://127.0.0.1:")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
