"""fedzero ls / nodes / log / stop against a real link: tables, JSON and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

from fedzero.core import Grid
from fedzero.link import Link
from tests.helpers import link_config

FEDZERO = [sys.executable, "-m", "fedzero.core.cli"]


def fedzero(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FEDZERO, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_control_commands_show_what_the_link_holds() -> None:
    link = Link(link_config()).start()
    try:
        with Grid(link.app_endpoint, run_config={"lr": 0.1}) as grid:
            run_id = grid.run_id
            ls_json = fedzero("ls", "--link", link.control_endpoint, "--json")
            ls_table = fedzero("ls", "--link", link.control_endpoint)
            nodes = fedzero("nodes", "--link", link.control_endpoint, "--json")
            log = fedzero("log", str(run_id), "--link", link.control_endpoint, "--json")
            stop = fedzero("stop", str(run_id), "--link", link.control_endpoint)
    finally:
        link.stop()
    assert ls_json.returncode == 0, ls_json.stderr
    assert [r["run_id"] for r in json.loads(ls_json.stdout)] == [run_id]
    assert ls_table.returncode == 0, ls_table.stderr
    assert "status" in ls_table.stdout
    assert f"{run_id}" in ls_table.stdout
    assert nodes.returncode == 0
    assert json.loads(nodes.stdout) == []
    assert log.returncode == 0, log.stderr
    assert all("kind" in json.loads(line) for line in log.stdout.splitlines())
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.startswith(f"run {run_id}: ")


def test_usage_mistakes_exit_2_with_argparse_usage() -> None:
    done = fedzero("local", "--nodes", "0")
    assert done.returncode == 2
    assert "--nodes" in done.stderr
    assert "not >= 1" in done.stderr
    done = fedzero()
    assert done.returncode == 0
    assert "local" in done.stdout
