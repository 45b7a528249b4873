"""CURVE on the fleet endpoint: only allow-listed node keys register or receive anything."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fedzero.core import CurveKeys, Grid, generate_keys
from fedzero.link import Link
from fedzero.node import NodeAgent
from tests.apps.echo.echoapp import client as echo
from tests.helpers import link_config, model, train_all

pytestmark = pytest.mark.timeout(60)


def _keys(tmp_path: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for name in ("link", "good", "bad", "late"):
        public, secret = generate_keys(tmp_path / "keys", name)
        paths[name], paths[f"{name}_secret"] = public, secret
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(paths["good"], allowed / "good.key")
    paths["allowed"] = allowed
    return paths


def test_unknown_key_can_neither_register_nor_receive(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    link = Link(
        link_config(curve_secret_key=keys["link_secret"], allowed_keys_dir=keys["allowed"])
    ).start()
    good = NodeAgent(
        echo, link.fleet_endpoint, curve=CurveKeys.load(keys["good_secret"], keys["link"])
    )
    bad = NodeAgent(
        echo, link.fleet_endpoint, curve=CurveKeys.load(keys["bad_secret"], keys["link"])
    )
    late = NodeAgent(
        echo, link.fleet_endpoint, curve=CurveKeys.load(keys["late_secret"], keys["link"])
    )
    plain = NodeAgent(echo, link.fleet_endpoint)
    try:
        for agent in (good, bad, late, plain):
            agent.start()
        assert good.wait_registered(10)
        with Grid(link.app_endpoint) as grid:
            nodes = grid.get_node_ids(min_nodes=1)
            assert nodes == [good.node_id]
            replies = train_all(grid, nodes, model())
            assert all(r.has_content() for r in replies)
        assert not bad.wait_registered(0.5)
        assert not plain.wait_registered(0.1)
        assert bad.registrations == plain.registrations == 0
        # allow-list one more key and reload: that node gets in without a restart
        shutil.copy(keys["late"], keys["allowed"] / "late.key")
        link.reload_keys()
        assert late.wait_registered(15)
        assert not bad.wait_registered(0.1)
    finally:
        for agent in (good, bad, late, plain):
            agent.stop()
        link.stop()


def test_node_id_is_derived_from_the_key(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    config = link_config(curve_secret_key=keys["link_secret"], allowed_keys_dir=keys["allowed"])
    ids = []
    for _ in range(2):  # the same key across link and node restarts is the same node
        link = Link(config).start()
        node = NodeAgent(
            echo, link.fleet_endpoint, curve=CurveKeys.load(keys["good_secret"], keys["link"])
        )
        try:
            node.start()
            assert node.wait_registered(10)
            ids.append(node.node_id)
        finally:
            node.stop()
            link.stop()
    assert ids[0] == ids[1]
