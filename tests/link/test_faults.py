"""Faults with real daemons as processes: kills, restarts, and a rogue peer."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from fedzero.core import ErrorCode, Grid, Message, decode, encode
from fedzero.core.cli import ControlClient
from fedzero.core.wire import control
from fedzero.link.store import SqliteReader
from tests.helpers import BUDGET, model, processes, socket_dir, train_all

pytestmark = pytest.mark.timeout(90)


def _grid(tmp: Path, **kw: Any) -> Grid:
    return Grid(f"ipc://{tmp}/app", connect_timeout=20, **kw)


def test_node_killed_mid_round_fails_within_liveness_budget() -> None:
    with socket_dir() as tmp, processes() as procs:
        procs.link(tmp)
        for i in range(3):
            procs.node(tmp, f"node{i}", f"examples={i + 1}")
        doomed = procs.node(tmp, "doomed", "hang=true,examples=9")
        three_in = threading.Event()

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "reply" and not event["error"]:
                counts["ok"] += 1
                if counts["ok"] == 3:
                    three_in.set()

        counts = {"ok": 0}
        result: dict[str, Any] = {}
        with _grid(tmp, listeners=[on_event]) as grid:
            nodes = grid.get_node_ids(min_nodes=4, timeout=30)
            assert len(nodes) == 4

            def round_() -> None:
                result["replies"] = train_all(grid, nodes, model())

            worker = threading.Thread(target=round_)
            worker.start()
            assert three_in.wait(30), "the three healthy nodes did not answer"
            os.kill(doomed.pid, signal.SIGKILL)
            worker.join(BUDGET)
            assert not worker.is_alive()
        replies: list[Message] = result["replies"]
        assert len(replies) == 4
        errors = [r for r in replies if r.has_error()]
        assert len(errors) == 1
        assert errors[0].error.code == ErrorCode.NODE_UNAVAILABLE
        # NODE_UNAVAILABLE: the link's liveness failed the task (not a round timeout);
        # how soon is the starved machine's business (no wall-clock assertion).
        for reply in replies:
            if reply.has_content():
                np.testing.assert_array_equal(reply.content["arrays"]["w"], np.arange(8) + 1)


def test_link_killed_and_restarted_nodes_come_back_by_themselves() -> None:
    with socket_dir() as tmp, processes() as procs:
        link = procs.link(tmp)
        for i in range(2):
            procs.node(tmp, f"node{i}", f"examples={i + 1}")
        with _grid(tmp) as grid:
            nodes = grid.get_node_ids(min_nodes=2, timeout=30)
            assert all(r.has_content() for r in train_all(grid, nodes, model()))
            grid.report(1, {"accuracy": 0.5})
            # writes are queued to the store's thread; `sync` waits until they are committed
            assert all(r.has_content() for r in train_all(grid, nodes, model()))
            with ControlClient(f"ipc://{tmp}/control") as control:
                control.request("sync")  # answered once the report is committed
            os.kill(link.pid, signal.SIGKILL)  # mid-run: the ServerApp is still attached
            link.wait(10)
        procs.link(tmp, "link2")
        with _grid(tmp) as grid:
            nodes = grid.get_node_ids(min_nodes=2, timeout=30)
            assert len(nodes) == 2
            replies = train_all(grid, nodes, model(16))
            assert len(replies) == 2
            assert all(r.has_content() for r in replies)
            assert grid.run_id == 2  # run ids continue: the history survived
        store = SqliteReader(tmp / "state" / "link.db")
        try:
            first = store.get_run(1)
            assert first is not None
            assert first.status == "interrupted"
            assert [r.metrics for r in store.list_rounds(1)] == [{"accuracy": 0.5}]
            assert {n.node_id for n in store.list_nodes()} >= set(nodes)
        finally:
            store.close()


def _rogue(ctx: zmq.Context[Any], tmp: Path) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{tmp}/fleet")
    return sock


def _recv_kinds(sock: zmq.Socket[bytes], until: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Receive headers until one of kind ``until`` arrives (or the deadline)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sock.poll(int((deadline - time.monotonic()) * 1000) + 1):
            break
        frames = sock.recv_multipart()
        header = json.loads(frames[0])
        header["_frames"] = frames
        out.append(header)
        if header["kind"] == until:
            return out
    return out


def _recv(sock: zmq.Socket[bytes], count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """Receive ``count`` messages' headers (fewer if the deadline passes)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
        out.append(json.loads(sock.recv_multipart()[0]))
    return out


def test_rogue_dealer_cannot_harm_the_link_or_the_run(zmq_context: zmq.Context[Any]) -> None:
    rng = np.random.default_rng(7)
    with socket_dir() as tmp, processes() as procs:
        link = procs.link(tmp, "link", "--max-message-mb", "1")
        procs.node(tmp, "node0", "examples=1")
        procs.node(tmp, "node1", "examples=2")
        rogue = _rogue(zmq_context, tmp)
        # 1. garbage of every kind, before registering
        rogue.send(rng.bytes(100))
        rogue.send_multipart([b'{"v":1,"kind":"message"}', b"\x00" * 3])
        rogue.send_multipart([b'{"v":99,"kind":"hello"}'])
        rogue.send_multipart(control("ping"))  # before hello: told to register
        answers = _recv(rogue, 4)
        kinds = [h["kind"] for h in answers]
        # garbage -> refused; a message from an unregistered peer -> reregister; a header
        # of another protocol version -> refused; a ping before hello -> reregister
        assert kinds == ["refused", "reregister", "refused", "reregister"]
        assert "frame 0" in answers[0]["reason"]
        assert "unsupported protocol version" in answers[2]["reason"]
        rogue.close(linger=0)
        # an oversized frame (the link allows 1 MB) only disconnects the sender
        rogue = _rogue(zmq_context, tmp)
        rogue.send_multipart([b"\xff" * 10, rng.bytes(2**21)])
        rogue.close(linger=1000)
        # 2. the rogue registers as a node, so the run can select it
        rogue = _rogue(zmq_context, tmp)
        rogue.send_multipart(control("hello", node_id=None, node_config={}, version="rogue"))
        welcome = _recv_kinds(rogue, "welcome")[-1]
        assert welcome["kind"] == "welcome"
        rogue_id = welcome["node_id"]
        with _grid(tmp) as grid:
            nodes = grid.get_node_ids(min_nodes=3, timeout=30)
            honest = [n for n in nodes if n != rogue_id]
            ids = grid.push_messages(
                [grid.create_message(model(), "train", n, group_id="1") for n in nodes]
            )
            task_frames = _recv_kinds(rogue, "message")[-1]["_frames"]
            task = decode(task_frames)
            assert task.metadata.dst_node_id == rogue_id
            # wrong ids: a reply to a message of another node, a reply to nothing
            other_id = next(i for i in ids if i != task.metadata.message_id)
            forged = task.create_reply(model())
            forged.metadata.reply_to_message_id = other_id
            rogue.send_multipart(encode(forged), copy=False)
            stray = task.create_reply(model())
            stray.metadata.reply_to_message_id = "0" * 32
            rogue.send_multipart(encode(stray), copy=False)
            # truncated payload
            good = encode(task.create_reply(model()))
            rogue.send_multipart([good[0], good[1], bytes(memoryview(good[2]))[:5]])
            # a valid reply, then the same reply replayed
            rogue.send_multipart(good, copy=False)
            rogue.send_multipart(good, copy=False)
            replies = grid.receive(ids, timeout=30)
            by_node = {r.metadata.src_node_id: r for r in replies}
            assert set(by_node) == set(nodes)
            for n in honest:
                np.testing.assert_array_equal(by_node[n].content["arrays"]["w"], np.arange(8) + 1)
            np.testing.assert_array_equal(by_node[rogue_id].content["arrays"]["w"], np.arange(8))
            # nothing more arrives for this run: the replay and forgeries were dropped
            assert grid.receive(["unused"], timeout=0.5) == []
            # and the link keeps serving
            again = train_all(grid, honest, model())
            assert all(r.has_content() for r in again)
        assert link.poll() is None
        rogue.close(linger=0)
