"""Issue 10, item 3: the per-round checkpoint write leaves the critical path of the
round result, and a SIGHUP handler only queues the reload (the IO loop applies it).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType

import numpy as np
import pytest

from fedzero.core import Grid
from fedzero.core.runtime import Notifier
from fedzero.link import Link
from fedzero.link.rounds import checkpoint_path, load_checkpoint
from fedzero.link.store import FAULTS_ENV
from tests.apps.echo.echoapp import client as echo
from tests.helpers import FAST, federation, link_config, model, wait_until

pytestmark = pytest.mark.timeout(120)

WAIT = 20 * float(FAST["heartbeat_timeout"])  # generous, derived from the liveness settings


def test_the_round_result_goes_out_before_its_checkpoint_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = tmp_path / "hold-checkpoints"
    hold.touch()  # the fold worker writes no checkpoint while this file exists
    monkeypatch.setenv(FAULTS_ENV, f"checkpoint_hold_while:{hold}")
    state = tmp_path / "state"
    configs = [{"examples": 1}, {"examples": 3}]
    with federation(echo, configs, state_dir=state) as (link, _), Grid(link.app_endpoint) as grid:
        nodes = grid.get_node_ids(min_nodes=2, timeout=WAIT)
        content = model()
        msgs = [grid.create_message(content, "train", n, group_id="1") for n in nodes]
        result = grid.send_and_receive(msgs, aggregate={"method": "fedavg"}, timeout=WAIT)
        assert result.replies == 2  # the aggregate arrived while its checkpoint is held
        saved = checkpoint_path(state / "checkpoints", grid.run_id, 1)
        assert not saved.exists()
        hold.unlink()
        assert wait_until(saved.exists, WAIT)
        np.testing.assert_array_equal(load_checkpoint(saved)["w"], result.arrays["w"])


class _Recorder(Notifier):
    """A notifier that remembers on which thread each reload was applied."""

    def __init__(self) -> None:
        super().__init__(None)
        self.threads: list[str] = []
        self.reloaded = threading.Event()

    def reloading(self, status: str | None = None) -> bool:
        self.threads.append(threading.current_thread().name)
        self.reloaded.set()
        return super().reloading(status)


def test_a_sighup_handler_only_queues_the_reload_for_the_io_loop() -> None:
    recorder = _Recorder()
    link = Link(link_config(), notifier=recorder).start()
    queued: list[str] = []

    def on_sighup(signum: int, frame: FrameType | None) -> None:  # as link/_cli.py wires it
        link.reload(None, {"log_level": "not-a-level"})  # (a failed reload leaves logging be)
        queued.append(threading.current_thread().name)

    previous = signal.signal(signal.SIGHUP, on_sighup)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        assert recorder.reloaded.wait(WAIT)
    finally:
        signal.signal(signal.SIGHUP, previous)
        link.stop()
    assert queued == [threading.main_thread().name]  # the handler ran, and returned
    assert recorder.threads == ["fedzero-link"]  # the IO loop applied the reload
