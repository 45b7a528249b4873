"""Processes do not outlive their purpose (issue 10, item 4): real link and node processes.

A node's ClientApp worker, stuck in a task, ends as soon as its run does: when
the run is stopped, when it finishes, and when the link restarts (a new
welcome after a reconnect: runs the link no longer announces are over).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from fedzero.core import ArrayRecord, Grid, RecordDict
from tests.helpers import Procs, processes, socket_dir

pytestmark = pytest.mark.timeout(180)

HEARTBEAT_TIMEOUT = 1.0  # what Procs.link configures
DEADLINE = 30 * HEARTBEAT_TIMEOUT


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it went away meanwhile
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def wait_gone(pid: int) -> None:
    """Block until process ``pid`` exits (its pidfd turns readable), within DEADLINE."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone already
    try:
        readable, _, _ = select.select([fd], [], [], DEADLINE)
        assert readable, f"process {pid} still runs after {DEADLINE} s"
    finally:
        os.close(fd)


def wait_started(fifo: Path) -> None:
    """Block until the ClientApp writes to ``fifo`` (it started training), within DEADLINE."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        readable, _, _ = select.select([fd], [], [], DEADLINE)
        assert readable, f"the ClientApp did not start its task within {DEADLINE} s"
    finally:
        os.close(fd)


@contextmanager
def hung_task(tmp: Path, procs: Procs) -> Iterator[tuple[subprocess.Popen[bytes], Grid, int]]:
    """A link, a node whose ClientApp hangs, and a run with a task stuck in that app."""
    procs.link(tmp)
    os.mkfifo(tmp / "started")
    node = procs.node(tmp, "node", f"hang=true,started-fifo={tmp}/started")
    grid = Grid(f"ipc://{tmp}/app", connect_timeout=DEADLINE)
    try:
        (node_id,) = grid.get_node_ids(min_nodes=1, timeout=DEADLINE)
        content = RecordDict({"arrays": ArrayRecord({"w": np.zeros(4, np.float32)})})
        grid.push_messages([grid.create_message(content, "train", node_id)])
        wait_started(tmp / "started")
        (worker,) = children(node.pid)
        yield node, grid, worker
    finally:
        grid.close()


def assert_ended_at_once(node: subprocess.Popen[bytes], worker: int, log: Path) -> None:
    wait_gone(worker)
    text = log.read_text()
    assert '"event": "worker_killed"' in text
    assert "did not stop within" not in text  # killed with its run, not after a grace
    assert node.poll() is None  # the node itself serves on


def test_stopping_a_run_ends_its_busy_worker_at_once() -> None:
    with socket_dir() as tmp, processes() as procs, hung_task(tmp, procs) as (node, grid, worker):
        stop = ["stop", str(grid.run_id), "--link", f"ipc://{tmp}/control"]
        cmd = [sys.executable, "-m", "fedzero.core.cli", *stop]  # `fedzero stop RUN`
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE, check=True)
        assert done.stdout.strip() == f"run {grid.run_id}: stopped"
        assert_ended_at_once(node, worker, tmp / "node.log")
        assert '"reason": "the run ended"' in (tmp / "node.log").read_text()


def test_a_finished_run_ends_its_busy_worker_at_once() -> None:
    with socket_dir() as tmp, processes() as procs, hung_task(tmp, procs) as (node, grid, worker):
        grid.close()  # the ServerApp is done: the run finishes with a task still out
        assert_ended_at_once(node, worker, tmp / "node.log")


def test_a_link_restart_ends_the_workers_of_the_runs_it_had() -> None:
    with socket_dir() as tmp, processes() as procs, hung_task(tmp, procs) as (node, _, worker):
        link = procs.items[0]
        link.send_signal(signal.SIGKILL)
        link.wait()
        procs.link(tmp, "link2")  # same state dir and addresses: the node reconnects
        assert_ended_at_once(node, worker, tmp / "node.log")
        assert "the link registered this node anew" in (tmp / "node.log").read_text()
