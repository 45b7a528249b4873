"""SIGTERM drains: the link and nodes finish or fail in-flight work cleanly and exit 0."""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

import pytest

from fedzero.core import ErrorCode, Grid
from fedzero.link.store import SqliteReader
from tests.helpers import model, processes, socket_dir

pytestmark = pytest.mark.timeout(60)


def _wait_fifo(path: Path, timeout: float) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready) and os.read(fd, 64).startswith(b"started")
    finally:
        os.close(fd)


def test_link_sigterm_fails_stuck_work_within_grace_and_exits_zero() -> None:
    with socket_dir() as tmp, processes() as procs:
        link = procs.link(tmp, "link", "--drain-grace", "1.0")
        procs.node(tmp, "ok", "examples=1")
        procs.node(tmp, "stuck", "hang=true")
        sent: list[float] = []

        def on_event(event: dict[str, object]) -> None:
            # The healthy node answered: the round is in flight on the link. Now SIGTERM.
            if event["event"] == "reply" and not sent:
                link.send_signal(signal.SIGTERM)
                sent.append(time.monotonic())

        with Grid(f"ipc://{tmp}/app", connect_timeout=20, listeners=[on_event]) as grid:
            nodes = grid.get_node_ids(min_nodes=2, timeout=30)
            content = model()
            ids = grid.push_messages([grid.create_message(content, "train", n) for n in nodes])
            replies = grid.receive(ids, timeout=20)
            assert sent
            assert link.wait(10) == 0
            assert time.monotonic() - sent[0] < 1.0 + 3.0
        codes = sorted(r.error.code if r.has_error() else -1 for r in replies)
        assert len(replies) == 2
        assert ErrorCode.RUN_STOPPED in codes
        # the state on disk is consistent: the run is recorded as interrupted, with its nodes
        store = SqliteReader(tmp / "state" / "link.db")
        try:
            run = store.get_run(1)
            assert run is not None
            assert run.status == "interrupted"
            assert sorted(run.nodes) == sorted(nodes)
            kinds = [e.kind for e in store.events(run_id=1)]
            assert kinds[0] == "run_started"
            assert kinds[-1] == "run_ended"
        finally:
            store.close()


def test_node_sigterm_finishes_its_task_then_exits_zero() -> None:
    with socket_dir() as tmp, processes() as procs:
        procs.link(tmp)
        fifo = tmp / "started"
        os.mkfifo(fifo)
        node = procs.node(tmp, "worker", f"work=0.5,started-fifo={fifo}")
        with Grid(f"ipc://{tmp}/app", connect_timeout=20) as grid:
            (node_id,) = grid.get_node_ids(min_nodes=1, timeout=30)
            ids = grid.push_messages([grid.create_message(model(), "train", node_id)])
            assert _wait_fifo(fifo, 20), "the task did not start"
            node.send_signal(signal.SIGTERM)
            (reply,) = grid.receive(ids, timeout=20)
            assert reply.has_content()
            assert node.wait(10) == 0
            assert grid.get_node_ids(timeout=5) == []  # it said bye: offline at once
