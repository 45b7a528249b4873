"""Owners on the app endpoint, and revoked CURVE keys (issue 11).

A ServerApp attaches only to the run it was started for; a foreign ``app_bye``
ends nothing; a run whose ServerApp vanished fails after the liveness budget; a
CURVE link keeps its app endpoint on this machine; a revoked key cuts off the
node connected with it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import zmq

from fedzero.core import ConfigurationError, CurveKeys, ErrorCode, Grid, generate_keys
from fedzero.core.runtime import apply_client_curve
from fedzero.core.wire import control
from fedzero.link import Link
from tests.helpers import FAST, link_config, wait_until
from tests.link.test_hostile_fleet import WAIT, peer, recv_until

pytestmark = pytest.mark.timeout(120)


def test_a_foreign_app_can_neither_attach_nor_end_a_run(zmq_context: zmq.Context[Any]) -> None:
    link = Link(link_config()).start()
    try:
        with Grid(link.app_endpoint) as grid:
            run_id = grid.run_id
            rogue = peer(zmq_context, link.app_endpoint)
            hello = {"run_id": run_id, "run_config": {}, "version": "x"}
            rogue.send_multipart(control("app_hello", **hello))
            refused = recv_until(rogue, "refused")
            assert refused["code"] == ErrorCode.UNAUTHORIZED
            rogue.send_multipart(control("app_hello", **hello, secret="0" * 64))
            assert recv_until(rogue, "refused")["code"] == ErrorCode.UNAUTHORIZED
            rogue.send_multipart(control("app_bye"))
            assert recv_until(rogue, "refused")["code"] == ErrorCode.UNAUTHORIZED
            assert [str(r.status) for r in link.runs()] == ["running"]
            assert grid.get_node_ids(timeout=0) == []  # the owner still talks to its run
            assert link.stats["app_hello_refused"] == 2
            rogue.close(linger=0)
    finally:
        link.stop()


def test_a_run_whose_server_app_vanished_fails(zmq_context: zmq.Context[Any]) -> None:
    link = Link(link_config()).start()
    try:
        app = peer(zmq_context, link.app_endpoint)
        app.send_multipart(control("app_hello", run_id=None, run_config={}, version="x"))
        run_id = recv_until(app, "app_welcome")["run_id"]
        app.close(linger=0)  # gone without app_bye

        def failed() -> bool:
            return any(r.run_id == run_id and str(r.status) == "failed" for r in link.runs())

        assert wait_until(failed, WAIT, every=FAST["heartbeat_interval"] / 4)
        (run,) = link.runs()
        assert "vanished" in run.error
    finally:
        link.stop()


def _curve(tmp_path: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for name in ("link", "node"):
        public, secret = generate_keys(tmp_path / "keys", name)
        paths[name], paths[f"{name}_secret"] = public, secret
    paths["allowed"] = tmp_path / "allowed"
    paths["allowed"].mkdir()
    shutil.copy(paths["node"], paths["allowed"] / "node.key")
    return paths


def test_a_curve_link_keeps_its_app_endpoint_on_this_machine(tmp_path: Path) -> None:
    keys = _curve(tmp_path)
    config = link_config(
        curve_secret_key=keys["link_secret"],
        allowed_keys_dir=keys["allowed"],
        app_address="tcp://0.0.0.0:0",
    )
    with pytest.raises(ConfigurationError, match="app_address"):
        Link(config).start()


def test_a_revoked_key_cuts_off_the_node_connected_with_it(
    zmq_context: zmq.Context[Any], tmp_path: Path
) -> None:
    keys = _curve(tmp_path)
    config = link_config(curve_secret_key=keys["link_secret"], allowed_keys_dir=keys["allowed"])
    link = Link(config).start()
    try:
        node = zmq_context.socket(zmq.DEALER)
        node.setsockopt(zmq.LINGER, 0)
        apply_client_curve(node, CurveKeys.load(keys["node_secret"], keys["link"]))
        node.connect(link.fleet_endpoint)
        hello = {"node_id": None, "node_config": {}, "version": "x"}
        node.send_multipart(control("hello", **hello))
        node_id = recv_until(node, "welcome")["node_id"]
        assert link.node_ids() == [node_id]
        (keys["allowed"] / "node.key").unlink()
        link.reload_keys()
        assert "revoked" in recv_until(node, "refused")["reason"]
        assert link.node_ids() == []
        node.send_multipart(control("hello", **hello))  # again, on its open connection
        assert recv_until(node, "refused")["code"] == ErrorCode.UNAUTHORIZED
        assert link.node_ids() == []
        node.close(linger=0)
    finally:
        link.stop()
