"""A large fleet on one link: heartbeats without parsing, timers without scans, a
registration budget, and no node blamed for the link's own backlog.

The timer and budget classes are checked directly (they are plain logic on
monotonic times given to them); the fleet endpoint's behaviour with real
sockets on loopback, speaking PROTOCOL.md as a node written in another
language would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from fedzero.core import ErrorCode
from fedzero.core.wire import control
from fedzero.link import Link
from fedzero.link.routing import Admission, Liveness, Node
from tests.helpers import BUDGET, FAST, link_config, wait_until

pytestmark = pytest.mark.timeout(120)


def _node(node_id: int, last_seen: float) -> Node:
    return Node(node_id, b"rid%d" % node_id, {}, None, registered_at=0.0, last_seen=last_seen)


def test_liveness_takes_a_silent_node_offline_once_the_link_has_read_its_socket() -> None:
    nodes = {1: _node(1, last_seen=0.0), 2: _node(2, last_seen=0.0)}
    liveness = Liveness(nodes, timeout=3.0, recheck=0.5)
    for node in nodes.values():
        liveness.watch(node)
    offline: list[int] = []

    def take_offline(node: Node, reason: str) -> None:
        node.online = False
        offline.append(node.node_id)

    liveness.caught_up = 1.0  # the link stalled: it last read everything at t=1
    liveness.check(10.0, take_offline)
    assert offline == []  # silence it has not read is not the nodes' silence
    nodes[2].last_seen = 10.5  # node 2's ping was waiting in the socket
    liveness.caught_up = 11.0
    liveness.check(11.0, take_offline)
    assert offline == [1]
    liveness.caught_up = 20.0
    liveness.check(20.0, take_offline)
    assert offline == [1, 2]
    assert len(liveness) == 0  # no timer left for nodes that are offline


def test_liveness_checks_only_due_timers() -> None:
    nodes = {i: _node(i, last_seen=float(i)) for i in range(1, 1001)}
    liveness = Liveness(nodes, timeout=30.0, recheck=5.0)
    for node in nodes.values():
        liveness.watch(node)
    liveness.caught_up = 100.0
    assert liveness.next_due() == 31.0
    liveness.check(40.5, lambda node, reason: setattr(node, "online", False))
    assert sum(not n.online for n in nodes.values()) == 10  # nodes 1..10, due by 40.5
    assert liveness.next_due() == 41.0


def test_admission_spreads_refused_hellos_over_the_budget() -> None:
    admission = Admission(rate=10.0, burst=3.0)
    assert [admission.admit(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    waits = [admission.admit(0.0) for _ in range(5)]
    assert all(w > 0 for w in waits)
    assert waits == sorted(waits)  # later ones come back later
    assert waits[-1] > waits[0]
    assert admission.admit(0.15) == 0.0  # the budget refilled one and a half tokens
    assert admission.admit(0.15) > 0


def _hello(sock: zmq.Socket[bytes], node_id: int) -> dict[str, Any]:
    sock.send_multipart(control("hello", node_id=node_id, node_config={}, version="test"))
    return _recv(sock)


def _recv(sock: zmq.Socket[bytes]) -> dict[str, Any]:
    assert sock.poll(int(BUDGET * 1000)), "no answer from the link"
    header: dict[str, Any] = json.loads(sock.recv_multipart()[0])
    return header


@pytest.fixture
def link() -> Iterator[Link]:
    link = Link(link_config()).start()
    try:
        yield link
    finally:
        link.stop()


@pytest.fixture
def sock(link: Link) -> Iterator[zmq.Socket[bytes]]:
    """A raw DEALER on the link's fleet endpoint, as a node written from PROTOCOL.md."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(link.fleet_endpoint)
    try:
        yield dealer
    finally:
        dealer.close()
        ctx.term()


def test_a_ping_in_any_spelling_is_answered_and_silence_takes_the_node_offline(
    link: Link, sock: zmq.Socket[bytes]
) -> None:
    assert _hello(sock, 42)["kind"] == "welcome"
    sock.send_multipart(control("ping"))  # as fedzero's node writes it: the fast path
    assert _recv(sock)["kind"] == "pong"
    sock.send(b'{ "kind": "ping", "v": 1 }')  # another client's spelling: parsed
    assert _recv(sock)["kind"] == "pong"
    assert link.node_ids() == [42]
    timeout = float(FAST["heartbeat_timeout"])
    assert wait_until(lambda: link.node_ids() == [], 30 * timeout)
    assert link.stats["hello_busy"] == 0


def test_hellos_past_the_budget_are_refused_with_retry_after(
    link: Link, sock: zmq.Socket[bytes]
) -> None:
    hello = control("hello", node_id=7, node_config={}, version="test")
    answers = []
    for _ in range(6):  # 3,000 hellos, 500 at once (a node reads its answers)
        for _ in range(500):
            sock.send_multipart(hello)
        answers += [_recv(sock) for _ in range(500)]
    busy = [a for a in answers if a["kind"] == "refused"]
    assert answers[0]["kind"] == "welcome"
    assert len(busy) + sum(a["kind"] == "welcome" for a in answers) == 3000
    for answer in busy:
        assert answer["code"] == ErrorCode.OVERLOADED
        assert answer["retry_after"] > 0
        assert "busy" in answer["reason"]
    assert link.stats["hello_busy"] == len(busy)
    assert link.node_ids() == [7]  # hellos again on its own connection: one node
