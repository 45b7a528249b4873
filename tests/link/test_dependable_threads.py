"""Issue 10, no thread dies silently: a fold worker that raises fails its round and
nothing else; one that dies makes the link unhealthy (watchdog, /api/health, /metrics).

Real links and nodes on loopback; the faults are the link's test hook
(``FEDZERO_TEST_FAULTS``, read when the link starts).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedzero.core import (
    ArrayRecord,
    ClientApp,
    Context,
    ErrorCode,
    FedzeroTimeoutError,
    Grid,
    Message,
    MetricRecord,
    RecordDict,
)
from fedzero.core.runtime import Notifier
from fedzero.link import Link
from fedzero.link.store import FAULTS_ENV
from fedzero.node import NodeAgent
from tests.helpers import BUDGET, FAST, federation, http_get, link_config, wait_for

pytestmark = pytest.mark.timeout(120)

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    seed = int(context.node_config["seed"])
    arrays = {k: v + seed for k, v in msg.content["arrays"].items()}
    metrics = MetricRecord({"num-examples": seed})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}))


def _model() -> RecordDict:
    return RecordDict({"arrays": ArrayRecord({"w": np.zeros(16, np.float32)})})


def _round(grid: Grid, nodes: list[int], group: str, **kw: Any) -> Any:
    content = _model()
    msgs = [grid.create_message(content, "train", n, group_id=group) for n in nodes]
    return grid.send_and_receive(msgs, aggregate={"method": "fedavg"}, **kw)


def test_a_fold_worker_that_raises_fails_its_round_and_aggregates_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FAULTS_ENV, "fold_raise_once")
    configs = [{"seed": 1}, {"seed": 3}]
    with federation(app, configs) as (link, _), Grid(link.app_endpoint) as grid:
        nodes = grid.get_node_ids(min_nodes=2)
        failed = _round(grid, nodes, "1")
        assert failed.arrays is None
        assert failed.replies == 0 or failed.failures
        code, reason = failed.failures[0].code, failed.failures[0].reason
        assert code == ErrorCode.AGGREGATION_FAILED
        assert "aggregation failed" in reason
        assert "injected test fault fold_raise_once" in reason
        ok = _round(grid, nodes, "2")  # the worker lives on: the next round is right
        assert ok.replies == 2
        assert not ok.failures
        expected = (1 * 1 + 3 * 3) / 4  # fedavg of 0+1 and 0+3 weighted 1 and 3
        np.testing.assert_allclose(ok.arrays["w"], np.full(16, expected, np.float32))
        assert link.health().healthy
        assert link.health().status == "ok"
        assert link.stats["rounds_failed"] == 1


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()


def _until(sock: socket.socket, text: str) -> list[str]:
    """The notifications received up to and including the first one holding ``text``."""
    out: list[str] = []
    deadline = time.monotonic() + BUDGET
    while not any(text in d for d in out):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {text!r} notification within {BUDGET} s: {out[-5:]}")
        sock.settimeout(left)
        out.append(sock.recv(4096).decode())
    return out


def _datagrams(sock: socket.socket, seconds: float) -> list[str]:
    """Every notification received within ``seconds``."""
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return out


def test_a_dead_fold_worker_stops_the_watchdog_and_reports_unhealthy(
    monkeypatch: pytest.MonkeyPatch, notify_socket: tuple[socket.socket, str]
) -> None:
    monkeypatch.setenv(FAULTS_ENV, "fold_die")
    sock, path = notify_socket
    watchdog = 0.05
    notifier = Notifier(path, watchdog_interval=watchdog)
    link = Link(link_config(http_address="127.0.0.1:0"), notifier=notifier).start()
    node = NodeAgent(app, link.fleet_endpoint, node_config={"seed": 2}).start()
    try:
        assert node.wait_registered(BUDGET)
        url = link.http_url
        status, body = http_get(f"{url}api/health")
        assert status == 200, body
        assert json.loads(body)["status"] == "ok"
        _until(sock, "WATCHDOG=1")
        with Grid(link.app_endpoint) as grid:
            nodes = grid.get_node_ids(min_nodes=1)
            with pytest.raises(FedzeroTimeoutError):  # the round can never finish
                _round(grid, nodes, "1", timeout=float(FAST["heartbeat_timeout"]))
        wait_for(lambda: not link.health().healthy, "the link reports the dead fold worker")
        reasons = link.health().unhealthy
        assert any("fold worker thread died" in r and "fold_die" in r for r in reasons)
        # The IO loop sends its notifications in order: the pings of ticks that saw
        # a live worker come before the status that says it died, none after it.
        _until(sock, "STATUS=unhealthy: the fold worker thread died")
        later = _datagrams(sock, 20 * watchdog)
        assert not any("WATCHDOG=1" in d for d in later), later
        status, body = http_get(f"{url}api/health")
        assert status == 503
        health = json.loads(body)
        assert health["status"] == "unhealthy"
        assert health["healthy"] is False
        assert any("fold worker" in r for r in health["reasons"])
        _, metrics = http_get(f"{url}metrics")
        assert b"fedzero_link_healthy 0.0" in metrics
    finally:
        node.stop()
        link.stop()


def test_health_is_ok_while_every_thread_runs() -> None:
    with federation(app, [{"seed": 1}], http_address="127.0.0.1:0") as (link, _):
        assert link.health().healthy
        status, body = http_get(f"{link.http_url}api/health")
        assert status == 200
        assert json.loads(body) == {
            "status": "ok",
            "healthy": True,
            "degraded": False,
            "reasons": [],
        }
        _, metrics = http_get(f"{link.http_url}metrics")
        assert b"fedzero_link_healthy 1.0" in metrics
        assert b"fedzero_link_degraded 0.0" in metrics
    assert not link.health().healthy  # stopped: not running
