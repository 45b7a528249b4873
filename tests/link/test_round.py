"""Rounds over a real link and real nodes (threads of this process, real sockets)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fedzero.core import (
    ArrayRecord,
    ClientApp,
    Context,
    ErrorCode,
    Grid,
    Message,
    RecordDict,
)
from tests.apps.echo.echoapp import client as echo
from tests.helpers import federation, model, train_all

pytestmark = pytest.mark.timeout(60)


def test_round_with_four_nodes() -> None:
    configs = [{"examples": i + 1} for i in range(4)]
    with federation(echo, configs) as (link, _), Grid(link.app_endpoint) as grid:
        nodes = grid.get_node_ids(min_nodes=4)
        assert len(nodes) == 4
        content = model(1000)
        replies = train_all(grid, nodes, content)
        assert [r.metadata.src_node_id for r in replies] == nodes
        for reply in replies:
            assert reply.metadata.run_id == grid.run_id
            np.testing.assert_array_equal(reply.content["arrays"]["w"], np.arange(1000) + 1)
        assert sorted(r.content["metrics"]["num-examples"] for r in replies) == [1, 2, 3, 4]


def test_failing_client_app_gives_error_reply_and_node_keeps_serving() -> None:
    with federation(echo, [{}, {"fail": True}]) as (link, _), Grid(link.app_endpoint) as grid:
        nodes = grid.get_node_ids(min_nodes=2)
        for _ in range(2):
            replies = train_all(grid, nodes, model())
            errors = [r for r in replies if r.has_error()]
            assert len(replies) == 2
            assert len(errors) == 1
            assert errors[0].error.code == ErrorCode.CLIENT_APP_RAISED
            assert "ValueError: this node is configured to fail" in errors[0].error.reason


def test_unsupported_message_type() -> None:
    with federation(echo, [{}]) as (link, _), Grid(link.app_endpoint) as grid:
        (node,) = grid.get_node_ids(min_nodes=1)
        (reply,) = grid.send_and_receive([grid.create_message(model(), "query", node)])
        assert reply.error.code == ErrorCode.UNSUPPORTED


def test_node_not_selected_receives_nothing() -> None:
    seen: dict[int, list[str]] = {}
    lock = threading.Lock()
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        with lock:
            seen.setdefault(context.node_config["i"], []).append(msg.metadata.message_id)
        return msg.create_reply(RecordDict())

    with (
        federation(app, [{"i": 0}, {"i": 1}, {"i": 2}]) as (link, nodes),
        Grid(link.app_endpoint) as grid,
    ):
        grid.get_node_ids(min_nodes=3)
        by_index = {n.node_config["i"]: n.node_id for n in nodes}
        chosen = [by_index[0], by_index[1]]
        for _ in range(3):
            assert len(train_all(grid, chosen, model())) == 2
    assert set(seen) == {0, 1}
    assert 2 not in seen


def test_ttl_expiry_fails_the_message_without_waiting_longer() -> None:
    release = threading.Event()
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        release.wait(30)
        return msg.create_reply(RecordDict())

    try:
        with federation(app, [{}]) as (link, _), Grid(link.app_endpoint) as grid:
            (node,) = grid.get_node_ids(min_nodes=1)
            start = time.monotonic()
            (reply,) = grid.send_and_receive([grid.create_message(model(), "train", node, ttl=0.5)])
            assert reply.error.code == ErrorCode.MESSAGE_EXPIRED
            assert time.monotonic() - start < 3
            release.set()
    finally:
        release.set()


def test_get_node_ids_waits_for_min_nodes() -> None:
    with federation(echo, [{}]) as (link, nodes), Grid(link.app_endpoint) as grid:
        from fedzero.node import NodeAgent

        late = NodeAgent(echo, link.fleet_endpoint).start()
        try:
            start = time.monotonic()
            ids = grid.get_node_ids(min_nodes=2, timeout=10)
            assert len(ids) == 2
            assert time.monotonic() - start < 5
        finally:
            late.stop()
        assert grid.get_node_ids(min_nodes=5, timeout=0.3) == [nodes[0].node_id]


def test_large_replies_wait_for_credit_and_none_is_lost() -> None:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        big = np.full(2**20, context.node_config["i"], np.float32)  # 4 MiB > credit threshold
        return msg.create_reply(RecordDict({"arrays": ArrayRecord({"big": big})}))

    configs = [{"i": i} for i in range(10)]
    with (
        federation(app, configs, max_concurrent_uploads=2) as (link, _nodes),
        Grid(link.app_endpoint) as grid,
    ):
        ids = grid.get_node_ids(min_nodes=10)
        replies = train_all(grid, ids, model())
        assert len(replies) == 10
        values = sorted(float(r.content["arrays"]["big"][0]) for r in replies)
        assert values == [float(i) for i in range(10)]
        assert 1 <= link.credit_high_water <= 2


def test_server_app_receives_only_its_own_runs_replies() -> None:
    with (
        federation(echo, [{}, {}]) as (link, _),
        Grid(link.app_endpoint) as a,
        Grid(link.app_endpoint) as b,
    ):
        assert a.run_id != b.run_id
        nodes = a.get_node_ids(min_nodes=2)
        ids_a = a.push_messages([a.create_message(model(), "train", n) for n in nodes])
        replies_b = b.send_and_receive([b.create_message(model(3), "train", n) for n in nodes])
        assert {r.metadata.run_id for r in replies_b} == {b.run_id}
        assert not {r.metadata.reply_to_message_id for r in replies_b} & set(ids_a)
        got = a.receive(ids_a, timeout=10)
        assert len(got) == 2
        assert {r.metadata.run_id for r in got} == {a.run_id}


def test_report_is_kept_with_the_run() -> None:
    with federation(echo, [{}]) as (link, _), Grid(link.app_endpoint) as grid:
        grid.report(1, {"accuracy": 0.5})
        grid.get_node_ids()  # a round trip: the report was handled before the answer
        link.sync()  # and its write committed
        reader = link.store_reader()
        try:
            assert [r.metrics for r in reader.list_rounds(grid.run_id)] == [{"accuracy": 0.5}]
        finally:
            reader.close()
