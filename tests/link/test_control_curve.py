"""The control endpoint runs code on the link's machine: only allow-listed users may reach it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fedzero.core import ConfigurationError, CurveKeys, FedzeroTimeoutError, generate_keys
from fedzero.core.cli import ControlClient
from fedzero.link import Link
from tests.helpers import link_config

pytestmark = pytest.mark.timeout(60)


def test_only_allow_listed_users_reach_the_control_endpoint(tmp_path: Path) -> None:
    link_pub, link_secret = generate_keys(tmp_path / "keys", "link")
    _, alice_secret = generate_keys(tmp_path / "keys", "alice")
    _, mallory_secret = generate_keys(tmp_path / "keys", "mallory")
    users = tmp_path / "users"
    users.mkdir()
    shutil.copy(tmp_path / "keys" / "alice.key", users / "alice.key")
    config = link_config(curve_secret_key=link_secret, control_allowed_keys_dir=users)
    link = Link(config).start()
    try:
        with ControlClient(
            link.control_endpoint, curve=CurveKeys.load(alice_secret, link_pub)
        ) as alice:
            kind, _ = alice.request("list_runs", limit=10)
            assert kind == "runs"
        for keys in (CurveKeys.load(mallory_secret, link_pub), None):
            with (
                ControlClient(link.control_endpoint, timeout=1.0, curve=keys) as other,
                pytest.raises(FedzeroTimeoutError),
            ):
                other.request("list_runs", limit=10)
    finally:
        link.stop()


def test_control_endpoint_off_loopback_needs_user_keys() -> None:
    config = link_config(control_address="tcp://0.0.0.0:0")
    with pytest.raises(ConfigurationError, match="control_allowed_keys_dir"):
        Link(config).start()
