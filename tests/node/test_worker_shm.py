"""Large payloads between the agent and its workers go through shared-memory segments.

Real worker processes, driven like the agent's IO thread drives them; the
segments are files in the pool's directory under ``/dev/shm``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedzero.core import ArrayRecord, ConfigRecord, Context, ErrorCode, Message, RecordDict
from fedzero.core.wire import as_memoryview
from fedzero.node.workers import WorkerPool
from tests.node.test_workers import Agent

pytestmark = pytest.mark.timeout(120)

SHM_APP = Path(__file__).parent / "apps" / "shm"
NODE_ID = 5
BIG = 100_000  # float32: 400 kB, above the shared-memory threshold


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    pool = WorkerPool(stop_grace=0.5, watchdog_interval=0.2, log_level="warning")
    try:
        yield pool
    finally:
        pool.close(5)


@pytest.fixture
def agent(pool: WorkerPool) -> Agent:
    return Agent(pool)


def context(run_id: int = 1) -> Context:
    return Context(run_id, NODE_ID, node_config={}, run_config={})


def task(values: np.ndarray, run_id: int = 1, **config: Any) -> Message:
    content = RecordDict({"arrays": ArrayRecord({"w": values})})
    if config:
        content["config"] = ConfigRecord(config)
    msg = Message(content, NODE_ID, "train")
    msg.metadata.run_id = run_id
    return msg


def big(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(BIG, dtype=np.float32)


def segments(pool: WorkerPool) -> list[Path]:
    assert pool.shm_dir is not None
    return sorted(p for p in pool.shm_dir.rglob("*") if p.is_file())


def ok(reply: Message) -> dict[str, Any]:
    assert not reply.has_error(), reply.error
    return dict(reply.content["metrics"])


def test_large_payloads_cross_as_read_only_views_of_segments(agent: Agent) -> None:
    values = big(0)
    msg = task(values)
    agent.replies += agent.pool.submit(msg, context(), SHM_APP)
    (reply,) = agent.collect(1)
    metrics = ok(reply.message)
    assert metrics == {"readonly": 1, "view": 1}  # the ClientApp cannot write into them
    np.testing.assert_array_equal(reply.message.content["arrays"]["w"], values + 1)
    # the reply's payload is a view of the worker's segment, forwarded without a copy
    payload = reply.frames[1:]
    assert all(isinstance(f, np.ndarray) and not f.flags.writeable for f in payload)
    names = {p.name for p in segments(agent.pool)}
    assert {"down-1", "up-1"} <= names
    del reply, payload
    # the next tasks reuse the same two segments (the replies are let go, as sent ones are)
    for seed in (1, 2):
        values = big(seed)
        w = agent.ask(task(values), context(), SHM_APP).content["arrays"]["w"]
        np.testing.assert_array_equal(w, values + 1)
        del w
    assert {p.name for p in segments(agent.pool)} == {"down-1", "up-1"}


def test_a_kept_received_array_is_never_overwritten(agent: Agent) -> None:
    first = big(1)
    assert ok(agent.ask(task(first, keep=True), context(), SHM_APP))["view"] == 1
    for seed in (2, 3):  # more tasks: the kept segment must not be written again
        ok(agent.ask(task(big(seed)), context(), SHM_APP))
    echoed = agent.ask(task(big(4), echo_kept=True), context(), SHM_APP)
    np.testing.assert_array_equal(echoed.content["arrays"]["w"], first)


def test_a_reply_waiting_to_be_sent_keeps_its_segment(agent: Agent) -> None:
    held = agent.ask(task(big(1)), context(), SHM_APP)  # like a reply waiting for credit
    frames = held.content["arrays"]["w"]
    for seed in (2, 3):
        ok(agent.ask(task(big(seed)), context(), SHM_APP))
    np.testing.assert_array_equal(frames, big(1) + 1)


def test_sigkill_of_a_worker_leaves_no_segment_and_close_removes_the_directory() -> None:
    pool = WorkerPool(stop_grace=0.5, watchdog_interval=0.2, log_level="warning")
    agent = Agent(pool)
    shm_dir = pool.shm_dir
    assert shm_dir is not None
    try:
        ok(agent.ask(task(big(1)), context(), SHM_APP))
        agent.replies += pool.submit(task(big(2), hang=True), context(), SHM_APP)
        agent.run_until(lambda: any(p.name == "down-1" for p in segments(pool)))
        pid = pool.worker_pid(1)
        assert pid is not None
        os.kill(pid, 9)
        (reply,) = agent.collect(1)
        assert reply.message.error.code == ErrorCode.CLIENT_APP_RAISED
        assert "died (exit code -9, SIGKILL)" in reply.message.error.reason
        assert segments(pool) == []  # its directory went with it
        assert list(shm_dir.iterdir()) == []
        values = big(3)  # the replacement gets fresh segments
        np.testing.assert_array_equal(
            agent.ask(task(values), context(), SHM_APP).content["arrays"]["w"], values + 1
        )
    finally:
        pool.close(5)
    assert not shm_dir.exists()


def test_a_new_pool_removes_the_segments_of_an_agent_that_was_killed() -> None:
    pool = WorkerPool(log_level="warning")
    assert pool.shm_dir is not None
    root = pool.shm_dir.parent
    pool.close(5)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    stale = root / f"fedzero-node-{dead}-abcd"
    (stale / "run-1-1").mkdir(parents=True)
    (stale / "run-1-1" / "down-1").write_bytes(b"x" * 100)
    pool = WorkerPool(log_level="warning")
    try:
        assert not stale.exists()
    finally:
        pool.close(5)


def test_small_payloads_stay_inline(agent: Agent) -> None:
    values = np.arange(16, dtype=np.float32)
    agent.replies += agent.pool.submit(task(values), context(), SHM_APP)
    (reply,) = agent.collect(1)
    np.testing.assert_array_equal(reply.message.content["arrays"]["w"], values + 1)
    assert not any(isinstance(f, np.ndarray) for f in reply.frames)
    assert all(as_memoryview(f, i) is not None for i, f in enumerate(reply.frames))
    assert segments(agent.pool) == []
