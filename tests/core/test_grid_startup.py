"""Start-up is not a heartbeat: a Grid waits ``connect_timeout`` for the link's first word."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from fedzero.core import ConnectionBrokenError, Grid
from fedzero.core.wire import control, parse_envelope

HEARTBEAT_TIMEOUT = 0.3


@pytest.fixture
def slow_link() -> Iterator[tuple[zmq.Socket[bytes], str]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        yield sock, f"tcp://127.0.0.1:{port}"
    finally:
        sock.close(linger=0)
        ctx.term()


def _recv_kind(sock: zmq.Socket[bytes], kind: str, deadline: float) -> bytes:
    """Receive until a message of ``kind`` arrives; return the sender's routing id."""
    while time.monotonic() < deadline:
        if sock.poll(100):
            peer, *frames = sock.recv_multipart(copy=False)
            if parse_envelope(frames)[0] == kind:
                return peer.bytes
    raise AssertionError(f"no {kind} before the deadline")


def test_a_link_that_answers_after_the_heartbeat_timeout_is_not_silent(
    slow_link: tuple[zmq.Socket[bytes], str],
) -> None:
    """The link says nothing for 3x heartbeat_timeout after app_hello (a link still
    compiling its kernels), then welcomes the run: the Grid connects, because only
    connect_timeout bounds the wait for the first word."""
    sock, address = slow_link
    outcome: dict[str, object] = {}

    def connect() -> None:
        try:
            grid = Grid(
                address,
                connect_timeout=60.0,
                heartbeat_interval=0.1,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
            )
        except Exception as exc:
            outcome["error"] = exc
        else:
            outcome["run_id"] = grid.run_id
            grid.close()

    thread = threading.Thread(target=connect)
    thread.start()
    peer = _recv_kind(sock, "app_hello", time.monotonic() + 60)
    quiet_until = time.monotonic() + 3 * HEARTBEAT_TIMEOUT
    while time.monotonic() < quiet_until:  # the link is busy: it reads nothing
        thread.join(quiet_until - time.monotonic())
        assert thread.is_alive(), f"the Grid gave up before the link answered: {outcome}"
    sock.send_multipart([peer, *control("app_welcome", run_id=7, run_config={})])
    thread.join(60)
    assert not thread.is_alive()
    assert outcome == {"run_id": 7}


def test_silence_after_the_first_word_still_breaks_the_connection(
    slow_link: tuple[zmq.Socket[bytes], str],
) -> None:
    sock, address = slow_link
    outcome: dict[str, object] = {}

    def connect_then_list() -> None:
        try:
            with Grid(
                address, connect_timeout=60.0, heartbeat_interval=0.1, heartbeat_timeout=0.5
            ) as grid:
                grid.get_node_ids(timeout=60.0)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=connect_then_list)
    thread.start()
    peer = _recv_kind(sock, "app_hello", time.monotonic() + 60)
    sock.send_multipart([peer, *control("app_welcome", run_id=1, run_config={})])
    thread.join(60)  # the link never answers again: the Grid notices within its budget
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), ConnectionBrokenError)
