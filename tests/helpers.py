"""Helpers to run real links and nodes: as processes (by PID) or in-process threads."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedzero.core import ArrayRecord, ClientApp, Grid, Message, RecordDict
from fedzero.link import Link, LinkConfig
from fedzero.node import NodeAgent

ECHO_APP = Path(__file__).parent / "apps" / "echo"
# Liveness short enough that a dead node or link is noticed within seconds, long
# enough that a starved 2-core machine (load 20+) does not declare live peers dead.
FAST = {"heartbeat_interval": 0.5, "heartbeat_timeout": 3.0, "warmup": False}


def link_config(**overrides: Any) -> LinkConfig:
    """A LinkConfig for tests: every endpoint ephemeral (never the daemon's default
    ports, so tests neither collide with each other nor with a running link), no
    stats server, short heartbeats, no kernel warm-up."""
    options: dict[str, Any] = {
        "fleet_address": "tcp://127.0.0.1:0",
        "app_address": "tcp://127.0.0.1:0",
        "control_address": "tcp://127.0.0.1:0",
        "http_address": "",
        **FAST,
    }
    return LinkConfig(**{**options, **overrides})


@contextlib.contextmanager
def socket_dir() -> Iterator[Path]:
    """A short private directory for ipc:// sockets (paths are limited to ~100 chars)."""
    with tempfile.TemporaryDirectory(prefix="fz-") as tmp:
        yield Path(tmp)


@dataclass
class Procs:
    """Processes started by a test; every one is stopped by PID at the end."""

    items: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.items.append(proc)
        return proc

    def link(self, tmp: Path, name: str = "link", *extra: str) -> subprocess.Popen[bytes]:
        flags = {
            "--fleet-address": f"ipc://{tmp}/fleet",
            "--app-address": f"ipc://{tmp}/app",
            "--control-address": f"ipc://{tmp}/control",
            "--state-dir": str(tmp / "state"),
            "--http-address": "",
            "--heartbeat-interval": str(FAST["heartbeat_interval"]),
            "--heartbeat-timeout": str(FAST["heartbeat_timeout"]),
            "--log-level": "info",
        }
        args = ["-m", "fedzero.link", *_flat(flags), "--no-warmup", *extra]
        return self.spawn(args, tmp / f"{name}.log")

    def node(
        self, tmp: Path, name: str, node_config: str, app: Path = ECHO_APP
    ) -> subprocess.Popen[bytes]:
        flags = {
            "--app": str(app),
            "--link": f"ipc://{tmp}/fleet",
            "--node-config": node_config,
            "--log-level": "info",
        }
        return self.spawn(["-m", "fedzero.node", *_flat(flags)], tmp / f"{name}.log")

    def stop_all(self) -> None:
        for proc in self.items:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.items:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def processes() -> Iterator[Procs]:
    procs = Procs()
    try:
        yield procs
    finally:
        procs.stop_all()


@contextlib.contextmanager
def federation(
    app: ClientApp, node_configs: list[dict[str, Any]], **link_options: Any
) -> Iterator[tuple[Link, list[NodeAgent]]]:
    """A link and nodes as threads of this process, on ephemeral loopback ports."""
    link = Link(link_config(**link_options)).start()
    nodes: list[NodeAgent] = []
    try:
        for cfg in node_configs:
            nodes.append(NodeAgent(app, link.fleet_endpoint, node_config=cfg).start())
        for node in nodes:
            assert node.wait_registered(10), "node did not register"
        yield link, nodes
    finally:
        for node in nodes:
            node.stop()
        link.stop()


def model(n: int = 8, dtype: Any = np.float32) -> RecordDict:
    return RecordDict({"arrays": ArrayRecord({"w": np.arange(n, dtype=dtype)})})


def train_all(grid: Grid, node_ids: list[int], content: RecordDict, **kw: Any) -> list[Message]:
    msgs = [grid.create_message(content, "train", n, group_id="1") for n in node_ids]
    return grid.send_and_receive(msgs, **kw)


def _flat(flags: dict[str, str]) -> list[str]:
    """``{"--a": "1", "--b": "2"}`` as command-line arguments."""
    return [item for pair in flags.items() for item in pair]


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    """Check ``condition`` every ``every`` seconds until it holds or ``timeout`` passes.

    For state that announces itself no other way (a registry, a process table);
    where an event, a reply or a socket can be waited on, wait on that instead.
    Returns whether the condition held.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        pause.wait(min(every, left))
    return True


BUDGET = 10 * float(FAST["heartbeat_timeout"])
"""Seconds any one event may take on a starved machine (from the FAST liveness settings)."""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = BUDGET) -> None:
    """Fail the test unless ``condition`` holds within ``timeout`` (see :func:`wait_until`)."""
    if not wait_until(condition, timeout, every=0.02):
        raise AssertionError(f"not within {timeout} s: {what}")


def http_get(url: str, timeout: float = BUDGET) -> tuple[int, bytes]:
    """GET ``url`` on loopback; return the status and the body, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - loopback
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
