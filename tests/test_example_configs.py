"""The shipped example configurations load with the daemons' real settings."""

from __future__ import annotations

from pathlib import Path

from fedzero.core.runtime import load_config
from fedzero.link import LinkConfig
from fedzero.node import NodeConfig

SYSTEMD = Path(__file__).parent.parent / "examples" / "systemd"


def test_link_toml_loads() -> None:
    cfg = load_config(LinkConfig, "link", config_file=SYSTEMD / "link.toml", environ={})
    assert cfg.state_dir == Path("/var/lib/fedzero/link")
    assert cfg.curve_enabled


def test_node_toml_loads() -> None:
    cfg = load_config(NodeConfig, "node", config_file=SYSTEMD / "node.toml", environ={})
    assert cfg.node_config["partition-id"] == 0
    assert cfg.isolation == "process"
