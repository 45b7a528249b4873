"""Rogue peers on the fleet endpoint: stolen ids, uncredited uploads, forged replies, floods.

Each test starts a real link (in-process, loopback) and speaks to it with raw
DEALER sockets, as a node written from PROTOCOL.md would. Deadlines derive
from the link's configured liveness settings.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq

from fedzero.core import (
    ArrayRecord,
    ClientApp,
    Context,
    ErrorCode,
    Grid,
    Message,
    MetricRecord,
    RecordDict,
    decode,
    encode,
)
from fedzero.core.wire import control
from fedzero.link import Link
from fedzero.node import NodeAgent
from tests.helpers import FAST, federation, link_config, model, wait_until

pytestmark = pytest.mark.timeout(120)

WAIT = 20 * FAST["heartbeat_timeout"]  # generous, derived from the liveness settings


# ------------------------------------------------------------------ helpers


def peer(ctx: zmq.Context[Any], endpoint: str) -> zmq.Socket[bytes]:
    """A raw DEALER connected to one of the link's endpoints."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def recv_until(
    sock: zmq.Socket[bytes], kind: str, timeout: float = WAIT, **match: Any
) -> dict[str, Any]:
    """The first header of ``kind`` (with the ``match`` fields) to arrive; frames in ``_frames``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not sock.poll(int(left * 1000) + 1):
            break
        frames = sock.recv_multipart()
        header = json.loads(frames[0])
        if header["kind"] == kind and all(header.get(k) == v for k, v in match.items()):
            header["_frames"] = frames
            return header
    raise AssertionError(f"no {kind} {match} within {timeout}s")


def raw(kind: str, **fields: Any) -> list[bytes]:
    """A control message as any JSON writer would send it (escapes kept: ``\\ud800``)."""
    return [json.dumps({"v": 1, "kind": kind, **fields}).encode("ascii")]


def register(sock: zmq.Socket[bytes], **fields: Any) -> dict[str, Any]:
    """Say hello; return the welcome."""
    hello = {"node_id": None, "node_config": {}, "version": "rogue/1", **fields}
    sock.send_multipart(control("hello", **hello))
    return recv_until(sock, "welcome")


@pytest.fixture
def link() -> Iterator[Link]:
    started = Link(link_config(credit_threshold=64 * 1024, max_upload_mb=1)).start()
    yield started
    started.stop()


def _task_for(grid: Grid, sock: zmq.Socket[bytes], node_id: int, content: RecordDict) -> Message:
    """Push one message to the raw node ``node_id``; return it as the node received it."""
    grid.push_messages([grid.create_message(content, "train", node_id, group_id="1")])
    return decode(recv_until(sock, "message")["_frames"])


@contextlib.contextmanager
def _rogue_with_task(
    ctx: zmq.Context[Any], link: Link
) -> Iterator[tuple[zmq.Socket[bytes], Grid, Message]]:
    """A registered raw node, a ServerApp, and one task the node received."""
    rogue = peer(ctx, link.fleet_endpoint)
    node_id = register(rogue)["node_id"]
    try:
        with Grid(link.app_endpoint) as grid:
            yield rogue, grid, _task_for(grid, rogue, node_id, model())
    finally:
        rogue.close(linger=0)


def _reply(task: Message, n: int = 8) -> Message:
    arrays = ArrayRecord({"w": np.zeros(n, np.float32)})
    return task.create_reply(RecordDict({"arrays": arrays, "metrics": MetricRecord({"x": 1})}))


# ------------------------------------------------------------------ identity


def test_a_stolen_node_id_is_refused_and_the_online_node_keeps_its_work(
    zmq_context: zmq.Context[Any], link: Link
) -> None:
    owner = peer(zmq_context, link.fleet_endpoint)
    welcome = register(owner)
    node_id, session = welcome["node_id"], welcome["session"]
    with Grid(link.app_endpoint) as grid:
        task = _task_for(grid, owner, node_id, model())
        thief = peer(zmq_context, link.fleet_endpoint)
        thief.send_multipart(control("hello", node_id=node_id, node_config={}, version="x"))
        refused = recv_until(thief, "refused")
        assert refused["code"] == ErrorCode.UNAUTHORIZED
        assert "session token" in refused["reason"]
        wrong = {"node_id": node_id, "node_config": {}, "version": "x", "session": "0" * 32}
        thief.send_multipart(control("hello", **wrong))
        assert recv_until(thief, "refused")["code"] == ErrorCode.UNAUTHORIZED
        # the owner's task is still pending: its reply is taken
        owner.send_multipart(encode(_reply(task)), copy=False)
        (reply,) = grid.receive([task.metadata.message_id], timeout=WAIT)
        assert reply.has_content()
        assert link.node_ids() == [node_id]
        assert link.stats["hello_refused"] == 2
        # the same node, back on a new connection with its token, is let in
        back = peer(zmq_context, link.fleet_endpoint)
        assert register(back, node_id=node_id, session=session)["node_id"] == node_id
    for sock in (owner, thief, back):
        sock.close(linger=0)


# ------------------------------------------------------------------ replies


def test_an_uncredited_large_reply_is_refused_counted_and_fails_its_task(
    zmq_context: zmq.Context[Any], link: Link
) -> None:
    with _rogue_with_task(zmq_context, link) as (rogue, grid, task):
        rogue.send_multipart(encode(_reply(task, n=100_000)), copy=False)  # 400 kB, no credit
        refused = recv_until(rogue, "refused")
        assert refused["reply_to"] == task.metadata.message_id
        assert "credit" in refused["reason"]
        (answer,) = grid.receive([task.metadata.message_id], timeout=WAIT)
        assert answer.has_error()
        assert answer.error.code == ErrorCode.REJECTED
        assert link.stats["reply_uncredited"] == 1


def test_every_refused_reply_is_named_and_foreign_replies_are_refused(
    zmq_context: zmq.Context[Any], link: Link
) -> None:
    with _rogue_with_task(zmq_context, link) as (rogue, grid, task):
        stray = _reply(task)
        stray.metadata.reply_to_message_id = "f" * 32
        rogue.send_multipart(encode(stray), copy=False)
        assert recv_until(rogue, "refused")["reply_to"] == "f" * 32
        broken = encode(_reply(task))
        rogue.send_multipart([broken[0], broken[1]])  # a tensor frame missing
        refused = recv_until(rogue, "refused")
        assert refused["code"] == ErrorCode.MALFORMED
        assert refused["reply_to"] == task.metadata.message_id
        good = encode(_reply(task))
        rogue.send_multipart(good, copy=False)
        grid.receive([task.metadata.message_id], timeout=WAIT)
        rogue.send_multipart(good, copy=False)  # a replay
        replay = recv_until(rogue, "refused")
        assert replay["reply_to"] == task.metadata.message_id
        assert "duplicate" in replay["reason"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("message_type", "evaluate"), ("group_id", "99"), ("ttl", 10.0**9), ("created_at", 1.0)],
)
def test_reply_metadata_must_match_its_task(
    zmq_context: zmq.Context[Any], link: Link, field: str, value: Any
) -> None:
    with _rogue_with_task(zmq_context, link) as (rogue, grid, task):
        reply = _reply(task)
        setattr(reply.metadata, field, value)
        rogue.send_multipart(encode(reply), copy=False)
        assert recv_until(rogue, "refused")["reply_to"] == task.metadata.message_id
        (answer,) = grid.receive([task.metadata.message_id], timeout=WAIT)
        assert answer.has_error()
        assert answer.error.code == ErrorCode.REJECTED
        assert field.split("_")[0] in answer.error.reason


# ------------------------------------------------------------------ bounds


def test_fat_hellos_are_refused_before_parsing(zmq_context: zmq.Context[Any], link: Link) -> None:
    rogue = peer(zmq_context, link.fleet_endpoint)
    fat = {"blob": "x" * 200_000}
    rogue.send_multipart(control("hello", node_id=None, node_config=fat, version="x"))
    refused = recv_until(rogue, "refused")
    assert refused["code"] == ErrorCode.OVERLOADED
    assert link.node_ids(online_only=False) == []
    rogue.close(linger=0)


def test_a_control_request_on_the_fleet_endpoint_names_the_endpoint(
    zmq_context: zmq.Context[Any], link: Link
) -> None:
    cli = peer(zmq_context, link.fleet_endpoint)
    cli.send_multipart(control("list_runs", limit=10))
    refused = recv_until(cli, "refused")
    assert "fleet endpoint" in refused["reason"]
    assert "control endpoint" in refused["reason"]
    cli.close(linger=0)


def test_a_push_to_many_unknown_nodes_is_refused_at_once(
    zmq_context: zmq.Context[Any], link: Link
) -> None:
    app = peer(zmq_context, link.app_endpoint)
    app.send_multipart(control("app_hello", run_id=None, run_config={}, version="x"))
    run_id = recv_until(app, "app_welcome")["run_id"]
    meta = {
        "run_id": run_id,
        "message_id": "",
        "src_node_id": 0,
        "dst_node_id": 0,
        "reply_to_message_id": "",
        "group_id": "1",
        "message_type": "train",
        "ttl": 60.0,
        "created_at": time.time(),
    }
    for count, words in ((60_000, "not registered"), (70_000, "exceed")):
        dst = [[i + 1, f"{i:032x}"] for i in range(count)]
        push = {"metadata": meta, "content": [], "dst": dst, "aggregate": None}
        started = time.monotonic()
        app.send_multipart(control("push", **push))
        refused = recv_until(app, "refused")
        assert words in refused["reason"]
        assert time.monotonic() - started < WAIT / 4  # no stall (it was 18.7 s for 100k)
    app.close(linger=0)


def test_a_node_that_never_reads_cannot_grow_the_links_memory(
    zmq_context: zmq.Context[Any], link: Link
) -> None:
    rogue = peer(zmq_context, link.fleet_endpoint)
    rogue.setsockopt(zmq.RCVHWM, 1)
    node_id = register(rogue)["node_id"]
    big = RecordDict({"arrays": ArrayRecord({"w": np.zeros(150_000, np.float32)})})  # 600 kB
    with Grid(link.app_endpoint) as grid:
        msgs = [grid.create_message(big, "train", node_id, group_id=str(i)) for i in range(4)]
        ids = grid.push_messages(msgs)
        answers = grid.receive(ids[1:], timeout=WAIT)  # the rogue never answers
        assert len(answers) == 3
        assert all(a.error.code == ErrorCode.OVERLOADED for a in answers)
        assert "not reading" in answers[0].error.reason
        assert link.stats["node_backlog_full"] == 3
    rogue.close(linger=0)


# ------------------------------------------------------------------ legit rounds stay exact

client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = {k: v + 1 for k, v in msg.content["arrays"].items()}
    metrics = MetricRecord({"num-examples": int(context.node_config["examples"])})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}))


def test_a_legit_round_is_exact_next_to_a_rogue(zmq_context: zmq.Context[Any]) -> None:
    configs = [{"examples": 1}, {"examples": 3}]
    with federation(client_app, configs) as (link, _), Grid(link.app_endpoint) as grid:
        rogue = peer(zmq_context, link.fleet_endpoint)
        rogue.send_multipart(raw("hello", node_id=None, node_config={"\ud800": 1}, version=""))
        assert "surrogate" in recv_until(rogue, "refused")["reason"]
        nodes = grid.get_node_ids(min_nodes=2)
        content = RecordDict({"arrays": ArrayRecord({"w": np.arange(8, dtype=np.float32)})})
        msgs = [grid.create_message(content, "train", n, group_id="1") for n in nodes]
        result = grid.send_and_receive(msgs, aggregate={"method": "fedavg"}, timeout=WAIT)
        np.testing.assert_array_equal(result.arrays["w"], np.arange(8, dtype=np.float32) + 1)
        rogue.close(linger=0)


def test_two_nodes_claiming_one_id_do_not_flap() -> None:
    configs = [{"examples": 1}]
    with federation(client_app, configs) as (link, (first,)), Grid(link.app_endpoint) as grid:
        second = NodeAgent(client_app, link.fleet_endpoint, node_id=first.node_id)
        second.start()
        try:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline and not link.stats["hello_refused"]:
                assert not second.wait_registered(FAST["heartbeat_interval"])
            assert link.stats["hello_refused"] >= 1  # the newcomer asked, in vain
            content = RecordDict({"arrays": ArrayRecord({"w": np.zeros(2, np.float32)})})
            msgs = [grid.create_message(content, "train", first.node_id, group_id="1")]
            (reply,) = grid.send_and_receive(msgs, timeout=WAIT)
            assert reply.has_content()
            assert first.registrations == 1
            assert second.registrations == 0
        finally:
            second.stop()


def test_runs_count_their_traffic_and_report_round_metrics() -> None:
    with federation(client_app, [{"examples": 2}]) as (link, _), Grid(link.app_endpoint) as grid:
        nodes = grid.get_node_ids(min_nodes=1)
        content = RecordDict({"arrays": ArrayRecord({"w": np.zeros(1000, np.float32)})})
        grid.send_and_receive([grid.create_message(content, "train", n) for n in nodes])
        grid.report(1, {"loss": 0.5, "diverged": math.inf})
        (run,) = link.runs()
        assert run.bytes_out > 4000
        assert run.bytes_in > 4000
        reader = link.store_reader()
        events: list[Any] = []

        def reported_round() -> bool:  # the report is one-way: wait for its stored event
            link.sync()
            events[:] = reader.events(since_id=0, run_id=run.run_id, limit=100)
            return any(e.kind == "round_reported" for e in events)

        try:
            assert wait_until(reported_round, WAIT)
        finally:
            reader.close()
        (reported,) = [e for e in events if e.kind == "round_reported"]
        assert reported.data["metrics"] == {"loss": 0.5, "diverged": {"f": "Infinity"}}


def test_the_registry_forgets_long_offline_nodes(zmq_context: zmq.Context[Any]) -> None:
    quick = {"heartbeat_interval": 0.01, "heartbeat_timeout": 0.02}  # forgotten after 2 s
    link = Link(link_config(**quick)).start()
    try:
        rogue = peer(zmq_context, link.fleet_endpoint)
        node_id = register(rogue)["node_id"]
        rogue.close(linger=0)  # silent from now on
        assert link.node_ids(online_only=False) == [node_id]
        forgotten = wait_until(lambda: not link.node_ids(online_only=False), WAIT)
        assert forgotten, link.node_ids(online_only=False)
    finally:
        link.stop()
