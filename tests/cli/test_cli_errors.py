"""Client-side mistakes get one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fedzero.link import Link
from tests.helpers import link_config

FEDZERO = [sys.executable, "-m", "fedzero.core.cli"]


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("127.0.0.1:9093", "did you mean tcp://127.0.0.1:9093?"),
        ("http://127.0.0.1:9093", "use tcp://, ipc:// or inproc://"),
        ("tcp://", "use tcp://, ipc:// or inproc://"),
    ],
)
def test_a_control_address_without_a_usable_scheme_is_one_line_and_exit_2(
    address: str, says: str
) -> None:
    commands = (["ls"], ["nodes"], ["log", "1"], ["stop", "1"]) if ":9093" in address else (["ls"],)
    for command in commands:
        done = subprocess.run(
            [*FEDZERO, *command, "--link", address],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert says in done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_the_fleet_address_given_to_the_control_command_is_one_line_and_exit_2() -> None:
    link = Link(link_config()).start()
    try:
        done = subprocess.run(
            [*FEDZERO, "ls", "--link", link.fleet_endpoint],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        link.stop()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is not the link's control endpoint" in done.stderr
    assert "fleet endpoint" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
