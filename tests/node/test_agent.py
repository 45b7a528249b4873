"""The node agent on its own: its errors, its drain, and the identity it keeps."""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import pytest

from fedzero.core import ClosedError, ConfigurationError, Context
from fedzero.core.runtime import Notifier
from fedzero.core.wire import MAX_ID
from fedzero.link import Link
from fedzero.node import NodeAgent, NodeConfig
from fedzero.node.workers import WorkerPool
from tests.apps.echo.echoapp import client as echo
from tests.helpers import FAST, link_config, socket_dir

pytestmark = pytest.mark.timeout(60)

# Every wait is a few liveness budgets of the configured heartbeats (FAST), so a
# starved machine still passes; the loops never sleep on their own.
DEADLINE = 20 * FAST["heartbeat_timeout"]


def test_thread_isolation_needs_a_client_app() -> None:
    with pytest.raises(ConfigurationError, match="needs a ClientApp object"):
        NodeAgent(None, isolation="thread")


def test_a_link_address_zeromq_cannot_use_is_a_configuration_error() -> None:
    agent = NodeAgent(echo, "tcp://127.0.0.1:no-port")
    with pytest.raises(ConfigurationError, match=re.escape("tcp://127.0.0.1:no-port")):
        agent.run()  # and returns: every socket was closed, so the context could end


def test_drain_wakes_the_loop_and_stops_the_agent_at_once() -> None:
    with socket_dir() as tmp, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp / "notify"))
        systemd.settimeout(DEADLINE)
        notifier = Notifier(str(tmp / "notify"), watchdog_interval=3600.0)
        backoff = 3 * DEADLINE  # the next hello is due long after the join below gives up
        agent = NodeAgent(
            echo,
            "tcp://127.0.0.1:1",
            backoff_initial=backoff,
            backoff_max=backoff,
            notifier=notifier,
        )  # nobody listens there
        thread = threading.Thread(target=agent.run)
        thread.start()
        try:
            while b"WATCHDOG=1" not in systemd.recv(4096):
                pass  # READY=1 first; the loop pings the watchdog just before it polls
            agent.drain(DEADLINE)  # only the wake-up pipe ends that poll in time
            thread.join(DEADLINE)
            assert not thread.is_alive()
            assert b"STOPPING=1" in systemd.recv(4096)
        finally:
            agent.stop()
            thread.join(DEADLINE)


def test_restarted_node_keeps_the_id_the_link_gave_it(tmp_path: Path) -> None:
    link = Link(link_config()).start()
    try:
        ids = []
        for _ in range(2):
            agent = NodeAgent(echo, link.fleet_endpoint, state_dir=tmp_path).start()
            try:
                assert agent.wait_registered(DEADLINE)
                ids.append(agent.node_id)
            finally:
                agent.stop()
        assert ids[0] is not None
        assert ids[0] == ids[1]
        assert (tmp_path / "node-id").read_text(encoding="ascii") == f"{ids[0]}\n"
    finally:
        link.stop()


def test_node_id_limit_is_the_wire_limit() -> None:
    NodeConfig(node_id=MAX_ID).validate()
    with pytest.raises(ConfigurationError, match="node_id"):
        NodeConfig(node_id=MAX_ID + 1).validate()


def test_closed_pool_refuses_work() -> None:
    pool = WorkerPool()
    pool.close()
    with pytest.raises(ClosedError):
        pool.start_run(Context(run_id=1, node_id=1), Path("."))
