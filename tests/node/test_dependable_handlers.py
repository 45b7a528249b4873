"""No handler ends the node (issue 10, item 2): a failure is an error reply or a log line.

The link here is a plain ROUTER socket of the test speaking the fleet protocol,
so it can send what a real link never would (a peer may be buggy or hostile).
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from fedzero.core import (
    ArrayRecord,
    ConfigurationError,
    Context,
    ErrorCode,
    Message,
    RecordDict,
    decode,
)
from fedzero.core import encode as encode_message
from fedzero.core.bundles import build_bundle
from fedzero.core.runtime import Notifier
from fedzero.core.wire import control, parse_envelope
from fedzero.node import NodeAgent
from fedzero.node.workers import WorkerPool
from tests.apps.echo.echoapp import client as echo
from tests.helpers import ECHO_APP, FAST, socket_dir
from tests.node.test_workers import Agent

pytestmark = pytest.mark.timeout(120)

NODE_ID = 7
DEADLINE = 20 * FAST["heartbeat_timeout"]


class FakeLink:
    """A ROUTER that welcomes one node and hands it what the test wants."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.peer = b""

    def receive(self, kind: str) -> tuple[dict[str, Any], list[zmq.Frame]]:
        """The node's next message of ``kind`` (pings are answered on the way)."""
        deadline = time.monotonic() + DEADLINE
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000) + 1):
                break
            peer, *frames = self.sock.recv_multipart(copy=False)
            self.peer = peer.bytes
            got, header, _ = parse_envelope(frames)
            if got == kind:
                return header, frames
            if got == "ping":
                self.send(control("pong"))
        raise AssertionError(f"no {kind!r} from the node within {DEADLINE} s")

    def send(self, frames: list[Any]) -> None:
        self.sock.send_multipart([self.peer, *frames], copy=False)

    def welcome(self) -> None:
        self.receive("hello")
        settings = {"heartbeat_interval": FAST["heartbeat_interval"], "heartbeat_timeout": 60.0}
        self.send(
            control(
                "welcome",
                node_id=NODE_ID,
                max_message_bytes=2**30,
                credit_threshold=2**30,
                session="fake-link-session",
                **settings,
            )
        )

    def task(self, run_id: int) -> Message:
        """Send a task of ``run_id``; return the node's reply to it."""
        return self.reply_to(self.send_task(run_id))

    def send_task(self, run_id: int) -> Message:
        msg = _message(run_id)
        self.send(encode_message(msg))
        return msg

    def reply_to(self, msg: Message) -> Message:
        _, frames = self.receive("message")
        reply = decode(frames)
        assert reply.metadata.reply_to_message_id == msg.metadata.message_id
        return reply


@pytest.fixture
def fake_link() -> Iterator[tuple[FakeLink, str]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    with socket_dir() as tmp:
        endpoint = f"ipc://{tmp}/fleet"
        link = FakeLink(ctx, endpoint)
        try:
            yield link, endpoint
        finally:
            link.sock.close(linger=0)
            ctx.term()


def test_process_isolation_with_a_client_app_object_needs_an_app_folder() -> None:
    with pytest.raises(ConfigurationError, match="pass app_dir"):
        NodeAgent(echo, isolation="process")


def test_a_task_the_node_cannot_start_is_an_error_reply_and_the_node_serves_on(
    fake_link: tuple[FakeLink, str], tmp_path: Path
) -> None:
    link, endpoint = fake_link
    agent = NodeAgent(
        link=endpoint, isolation="process", bundle_dir=tmp_path / "apps", **_liveness()
    )
    agent.start()
    try:
        link.welcome()
        link.send(control("run", run_id=1, run_config={}, bundle="not-a-bundle-hash"))
        for _ in range(2):  # the first did not end the IO thread: the second is answered too
            reply = link.task(run_id=1)
            assert reply.error.code == ErrorCode.UNKNOWN
            assert "bundle hash" in reply.error.reason
        link.send(control("credit_grant", reply_to="nothing-waits-for-this"))
        assert link.task(run_id=1).has_error()
        assert agent.healthy
    finally:
        agent.stop()


def test_a_bundle_that_cannot_be_installed_fails_its_tasks_with_the_cause(
    fake_link: tuple[FakeLink, str], tmp_path: Path
) -> None:
    bundle = build_bundle(ECHO_APP)
    not_a_dir = tmp_path / "apps"
    not_a_dir.write_text("a file where the bundle cache should be\n")
    link, endpoint = fake_link
    agent = NodeAgent(link=endpoint, isolation="process", bundle_dir=not_a_dir, **_liveness())
    agent.start()
    try:
        link.welcome()
        link.send(control("run", run_id=1, run_config={}, bundle=bundle.hash))
        msg = link.send_task(run_id=1)
        header, _ = link.receive("get_bundle")
        assert header["hash"] == bundle.hash
        link.send([*control("bundle", hash=bundle.hash), bundle.data])
        reply = link.reply_to(msg)
        assert reply.error.code == ErrorCode.UNAUTHORIZED
        assert "cannot install bundle" in reply.error.reason
        assert agent.healthy
    finally:
        agent.stop()


def _liveness() -> dict[str, float]:
    return {
        "heartbeat_interval": FAST["heartbeat_interval"],
        "heartbeat_timeout": 60.0,  # the fake link answers pings only while it reads
    }


def test_an_agent_whose_io_loop_failed_is_unhealthy_and_tells_systemd() -> None:
    with socket_dir() as tmp, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp / "notify"))
        systemd.settimeout(DEADLINE)
        notifier = Notifier(str(tmp / "notify"), watchdog_interval=FAST["heartbeat_interval"])
        agent = NodeAgent(echo, "tcp://127.0.0.1:no-port", notifier=notifier)
        assert agent.healthy
        with pytest.raises(ConfigurationError):
            agent.run()  # its loop cannot go on: it ends, loudly
        assert not agent.healthy
        said = systemd.recv(4096)
        assert said.startswith(b"STATUS=failed: ConfigurationError: ")
        assert b"WATCHDOG=1" not in said


FAKE_WORKER = """#!{python}
# A worker that says hello and is gone before the agent can answer it.
import json, os, sys
import zmq

args = sys.argv[1:]
ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.ROUTING_ID, args[args.index("--identity") + 1].encode())
sock.connect(args[args.index("--endpoint") + 1])
sock.send(json.dumps({{"fzw": 1, "op": "hello", "pid": os.getpid()}}).encode())
sock.close(linger=5000)
ctx.term()
"""


def test_a_worker_gone_before_its_init_fails_its_task_not_the_agent(tmp_path: Path) -> None:
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_WORKER.format(python=sys.executable))
    fake.chmod(0o755)
    pool = WorkerPool(python=str(fake), log_level="warning")
    try:
        agent = Agent(pool)
        msg = _message(run_id=1)
        agent.replies += pool.submit(msg, Context(1, NODE_ID), ECHO_APP)
        pid = pool.worker_pid(1)
        assert pid is not None
        _wait_gone(pid)  # its hello is queued; the connection behind it is closed
        (reply,) = agent.collect(1, timeout=DEADLINE)  # the agent's loop never raises
        assert reply.reply_to == msg.metadata.message_id
        assert reply.message.error.code == ErrorCode.CLIENT_APP_RAISED
    finally:
        pool.close(5)


def _message(run_id: int) -> Message:
    content = RecordDict({"arrays": ArrayRecord({"w": np.zeros(4, np.float32)})})
    msg = Message(content, NODE_ID, "train")
    msg.metadata.run_id = run_id
    return msg


def _wait_gone(pid: int) -> None:
    fd = os.pidfd_open(pid)
    try:
        assert select.select([fd], [], [], DEADLINE)[0], f"process {pid} still runs"
    finally:
        os.close(fd)
