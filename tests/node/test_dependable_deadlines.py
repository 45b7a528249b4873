"""Bounded tasks (issue 10, item 8): a ClientApp that hangs past its deadline is ended.

The deadline is the task's TTL, or the shorter ``task-timeout`` (seconds) a
strategy puts in the task's ConfigRecord (or a run puts in its run config).
"""

from __future__ import annotations

import os
import select
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedzero.core import (
    ArrayRecord,
    ClientApp,
    ConfigRecord,
    Context,
    ErrorCode,
    Grid,
    Message,
    MetricRecord,
    RecordDict,
)
from fedzero.node.workers import WorkerPool
from tests.helpers import FAST, federation
from tests.node.test_workers import Agent

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 1.0  # the task-timeout under test
SHORT_TTL = 5 * FAST["heartbeat_timeout"]  # long enough to reach a starved worker
DEADLINE = 30 * FAST["heartbeat_timeout"]  # bound of every wait (a starved machine passes)

CLIENT = """
import os, threading
from fedzero.core import ArrayRecord, ClientApp, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(msg, context):
    if msg.content.config_records["config"].get("hang"):
        threading.Event().wait()  # stuck for good: only a kill ends it
    metrics = MetricRecord({"pid": os.getpid()})
    return msg.create_reply(RecordDict({"metrics": metrics}))
"""


@pytest.fixture
def hanging_app(tmp_path: Path) -> Path:
    (tmp_path / "hangapp").mkdir()
    (tmp_path / "hangapp" / "__init__.py").write_text("")
    (tmp_path / "hangapp" / "client.py").write_text(CLIENT)
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent("""
        [project]
        name = "hangapp"
        version = "1.0.0"

        [tool.fedzero.app]
        serverapp = "hangapp.client:app"
        clientapp = "hangapp.client:app"
        """)
    )
    return tmp_path


@pytest.fixture
def agent() -> Iterator[Agent]:
    pool = WorkerPool(stop_grace=DEADLINE, watchdog_interval=0.2, log_level="warning")
    try:
        yield Agent(pool)
    finally:
        pool.close(5)


def _task(run_id: int = 1, **config: Any) -> Message:
    content = RecordDict({"arrays": ArrayRecord({"w": np.zeros(4, np.float32)})})
    content["config"] = ConfigRecord(config)
    msg = Message(content, 5, "train")
    msg.metadata.run_id = run_id
    return msg


def _wait_gone(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], DEADLINE)[0], f"process {pid} still runs"
    finally:
        os.close(fd)


@pytest.mark.parametrize("where", ["task config", "run config"])
def test_a_worker_hung_past_its_task_timeout_is_killed_and_the_task_answered(
    agent: Agent, hanging_app: Path, where: str
) -> None:
    ctx = Context(1, 5)
    first = agent.ask(_task(), ctx, hanging_app)  # the worker is up: the timeout is the app's
    pid = int(first.content["metrics"]["pid"])
    timeout = {"task-timeout": TIMEOUT}
    ctx.run_config = timeout if where == "run config" else {}
    per_task = timeout if where == "task config" else {}
    agent.replies += agent.pool.submit(_task(hang=True, **per_task), ctx, hanging_app)
    (late,) = agent.collect(1, timeout=DEADLINE)
    assert late.message.error.code == ErrorCode.MESSAGE_EXPIRED
    assert late.message.error.reason == (
        "the ClientApp did not answer within its task-timeout of 1 s; the node ended it"
    )
    _wait_gone(pid)
    ctx.run_config = {}  # the next task, unhurried (a fresh worker's start-up is not timed)
    after = agent.ask(_task(), ctx, hanging_app)
    assert int(after.content["metrics"]["pid"]) != pid
    assert agent.pool.in_flight == 0


def test_a_task_timeout_longer_than_the_ttl_leaves_the_ttl_in_charge(
    agent: Agent, hanging_app: Path
) -> None:
    ctx = Context(1, 5)
    agent.ask(_task(), ctx, hanging_app)
    pid = agent.pool.worker_pid(1)
    assert pid is not None
    msg = _task(hang=True, **{"task-timeout": 10 * DEADLINE})
    msg.metadata.ttl = SHORT_TTL  # the link answers it when the TTL runs out; the node ends it
    agent.replies += agent.pool.submit(msg, ctx, hanging_app)
    agent.run_until(lambda: agent.pool.in_flight == 0, timeout=DEADLINE)
    _wait_gone(pid)
    assert agent.replies == []  # past its TTL, the task is the link's to answer


def test_a_thread_hung_past_its_task_timeout_is_abandoned_and_the_run_goes_on() -> None:
    release = threading.Event()
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        if msg.content.config_records["config"].get("hang"):
            release.wait()  # stuck until the test ends
        return msg.create_reply(RecordDict({"metrics": MetricRecord({"ok": 1})}))

    try:
        with federation(app, [{}]) as (link, _), Grid(link.app_endpoint) as grid:
            (node,) = grid.get_node_ids(min_nodes=1, timeout=DEADLINE)
            timeout = {"task-timeout": TIMEOUT}
            hung = grid.create_message(_task(hang=True, **timeout).content, "train", node)
            (late,) = grid.send_and_receive([hung], timeout=DEADLINE)
            assert late.error.code == ErrorCode.MESSAGE_EXPIRED
            assert "task-timeout of 1 s" in late.error.reason
            fine = grid.create_message(_task(**timeout).content, "train", node)
            (reply,) = grid.send_and_receive([fine], timeout=DEADLINE)  # a fresh thread
            assert reply.content["metrics"]["ok"] == 1
    finally:
        release.set()
