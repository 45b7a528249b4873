"""``fedzero local`` as a user runs it: failures are visible, Ctrl-C ends everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedzero.core.cli import create_app
from tests.helpers import wait_until

LOCAL = [sys.executable, "-m", "fedzero.core.cli", "local"]


def _app(tmp_path: Path, raise_in_train: str | None = None) -> Path:
    app_dir = create_app("demo", tmp_path / "demo", framework="numpy")
    if raise_in_train is not None:
        client = app_dir / "demo" / "client.py"
        head = "def train_fn(msg: Message, context: Context) -> Message:\n"
        text = client.read_text()
        assert head in text
        client.write_text(text.replace(head, f"{head}    raise ValueError({raise_in_train!r})\n"))
    return app_dir


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_run_whose_rounds_aggregate_nothing_fails_and_names_the_node_error(
    tmp_path: Path,
) -> None:
    app_dir = _app(tmp_path, raise_in_train="boom from the client")
    done = subprocess.run(
        [*LOCAL, str(app_dir), "--nodes", "2", "--run-config", "num-rounds=2"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 1, done.stdout
    assert "aggregated no reply" in done.stdout
    assert "node error: ValueError: boom from the client" in done.stdout


def test_unknown_run_config_keys_are_refused_with_the_known_ones_listed(tmp_path: Path) -> None:
    app_dir = _app(tmp_path)
    done = subprocess.run(
        [*LOCAL, str(app_dir), "--nodes", "1", "--run-config", "num-round=3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown run-config key(s) num-round" in done.stderr
    assert "num-rounds" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_ctrl_c_ends_the_link_and_every_node_within_two_seconds(tmp_path: Path) -> None:
    app_dir = _app(tmp_path)
    proc = subprocess.Popen(
        [*LOCAL, str(app_dir), "--nodes", "2", "--run-config", "num-rounds=100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for the run to be under way
            if line.startswith("round"):
                break
        else:
            pytest.fail(f"no round reported; exit code {proc.wait()}")
        children = _children(proc.pid)
        assert len(children) == 3  # the link and two nodes
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        took = time.monotonic() - interrupted
        assert proc.returncode == 130
        assert "stopping the link and 2 nodes" in rest
        assert not [pid for pid in children if _alive(pid)]
        # SIGTERM, 1.5 s of grace, then SIGKILL: about 2 s on an idle machine; the bound
        # leaves room for a starved one (the figure itself is measured, not asserted).
        assert took < 10.0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_the_link_and_nodes_die_with_fedzero_local_even_when_it_is_killed(
    tmp_path: Path,
) -> None:
    app_dir = _app(tmp_path)
    proc = subprocess.Popen(
        [*LOCAL, str(app_dir), "--nodes", "2", "--run-config", "num-rounds=100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # wait for the run to be under way
        if line.startswith("round"):
            break
    children = _children(proc.pid)
    assert len(children) == 3
    proc.kill()  # no chance to clean up: the children must go by themselves
    proc.wait()
    proc.stdout.close()
    assert wait_until(lambda: not [pid for pid in children if _alive(pid)], timeout=60)
