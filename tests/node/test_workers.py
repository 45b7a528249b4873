"""Per-run ClientApp worker processes: real processes and sockets, driven like the agent does."""

from __future__ import annotations

import os
import select
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from fedzero.core import (
    ArrayRecord,
    ConfigRecord,
    Context,
    ErrorCode,
    Message,
    RecordDict,
    decode,
    encode,
)
from fedzero.core.bundles import load_client_app, read_app_spec
from fedzero.core.wire import as_memoryview
from fedzero.node import handle_message
from fedzero.node.workers import WorkerPool, WorkerReply
from tests.helpers import ECHO_APP

pytestmark = pytest.mark.timeout(60)

STATEFUL_APP = Path(__file__).parent.parent / "apps" / "stateful"
NODE_ID = 5


class Agent:
    """Plays the node agent's IO thread: one poller over the pool's pollables."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.poller = zmq.Poller()
        for item in pool.pollables():
            self.poller.register(item, zmq.POLLIN)
        self.replies: list[WorkerReply] = []

    def run_until(self, done: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError("the pool did not get there in time")
            events = dict(self.poller.poll(int(min(deadline - now, 0.2) * 1000) + 1))
            for item in self.pool.pollables():
                if item in events:
                    self.replies += self.pool.on_readable(item)
            self.replies += self.pool.tick()

    def collect(self, n: int, timeout: float = 20.0) -> list[WorkerReply]:
        self.run_until(lambda: len(self.replies) >= n, timeout)
        out, self.replies = self.replies[:n], self.replies[n:]
        return out

    def ask(self, msg: Message, ctx: Context, app: Path = STATEFUL_APP) -> Message:
        self.replies += self.pool.submit(msg, ctx, app)
        (reply,) = self.collect(1)
        assert reply.reply_to == msg.metadata.message_id
        return reply.message


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


def context(run_id: int, **node_config: Any) -> Context:
    return Context(run_id, NODE_ID, node_config=node_config, run_config={"lr": 0.5})


def task(run_id: int, n: int = 8, **config: Any) -> Message:
    content = RecordDict({"arrays": ArrayRecord({"w": np.arange(n, dtype=np.float32)})})
    if config:
        content["config"] = ConfigRecord(config)
    msg = Message(content, NODE_ID, "train")
    msg.metadata.run_id = run_id
    return msg


def metrics(reply: Message) -> dict[str, Any]:
    assert not reply.has_error(), reply.error
    return dict(reply.content["metrics"])


def wait_gone(agent: Agent, pid: int) -> None:
    agent.run_until(lambda: pid not in agent.pool.live_pids)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: the process no longer exists


def test_many_messages_of_one_run_reuse_one_worker_and_its_context(agent: Agent) -> None:
    ctx = context(1)
    seen = [metrics(agent.ask(task(1), ctx)) for _ in range(20)]
    assert {m["pid"] for m in seen} == {agent.pool.worker_pid(1)}
    assert [m["calls"] for m in seen] == list(range(1, 21))  # context.state persists
    assert seen[0]["node_id"] == NODE_ID
    assert seen[0]["lr"] == 0.5
    assert agent.pool.in_flight == 0


def test_received_frames_forward_and_reply_arrays_are_views_of_frames(
    agent: Agent, zmq_context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    """The agent's path: frames received from the link go to the worker as they are."""
    with zmq_context.socket(zmq.PAIR) as link, zmq_context.socket(zmq.PAIR) as node:
        link.bind("inproc://fleet")
        node.connect("inproc://fleet")
        sent: list[Any] = encode(task(1, n=50_000))  # above pyzmq's copy threshold
        link.send_multipart(sent, copy=False)
        received = node.recv_multipart(copy=False)
    msg = decode(received)
    agent.replies += agent.pool.submit(msg, context(1), STATEFUL_APP, frames=received)
    (reply,) = agent.collect(1)
    w = reply.message.content["arrays"]["w"]
    np.testing.assert_array_equal(w, np.arange(50_000, dtype=np.float32) + 1)
    frames = [np.frombuffer(as_memoryview(f, i), np.uint8) for i, f in enumerate(reply.frames)]
    assert any(np.shares_memory(w, f) for f in frames)
    assert decode(reply.frames) == reply.message  # the frames forward as they are
    assert metrics(reply.message)["zero_copy"] == 1  # the worker's arrays were views too


def test_worker_never_imports_numba(agent: Agent) -> None:
    assert metrics(agent.ask(task(1), context(1)))["numba"] == 0


def test_context_changes_reach_the_worker(agent: Agent) -> None:
    ctx = context(1)
    metrics(agent.ask(task(1), ctx))
    ctx.node_id, ctx.run_config = 9, {"lr": 0.25}  # re-registration, a new "run" message
    seen = metrics(agent.ask(task(1), ctx))
    assert (seen["node_id"], seen["lr"], seen["calls"]) == (9, 0.25, 2)


def test_two_runs_get_two_workers_and_end_run_stops_one(agent: Agent) -> None:
    a, b = context(1), context(2)
    agent.replies += agent.pool.submit(task(1), a, STATEFUL_APP)
    agent.replies += agent.pool.submit(task(2), b, STATEFUL_APP)
    replies = agent.collect(2)
    pids = {r.message.metadata.run_id: metrics(r.message)["pid"] for r in replies}
    assert pids == {1: agent.pool.worker_pid(1), 2: agent.pool.worker_pid(2)}
    assert pids[1] != pids[2]
    agent.pool.end_run(1)
    assert agent.pool.worker_pid(1) is None
    wait_gone(agent, pids[1])
    assert agent.pool.live_pids == [pids[2]]
    assert metrics(agent.ask(task(2), b))["calls"] == 2  # the other run is untouched


def test_crashing_worker_fails_its_task_and_the_next_task_gets_a_new_worker(
    agent: Agent,
) -> None:
    ctx = context(1)
    first = metrics(agent.ask(task(1), ctx))["pid"]
    crash = agent.ask(task(1, crash=True), ctx)
    assert crash.error.code == ErrorCode.CLIENT_APP_RAISED
    assert crash.error.reason == "ClientApp worker for run 1 died (exit code 3)"
    assert first not in agent.pool.live_pids
    after = metrics(agent.ask(task(1), ctx))
    assert after["pid"] != first
    assert after["calls"] == 1  # a fresh Context: the state died with the process


def test_tasks_waiting_behind_a_crash_go_to_the_replacement(agent: Agent) -> None:
    ctx = context(1)
    msgs = [task(1), task(1, crash=True), task(1), task(1)]
    for msg in msgs:
        agent.replies += agent.pool.submit(msg, ctx, STATEFUL_APP)
    assert agent.pool.in_flight == 4
    replies = agent.collect(4)
    assert [r.reply_to for r in replies] == [m.metadata.message_id for m in msgs]
    assert replies[1].message.has_error()
    pids = [metrics(replies[i].message)["pid"] for i in (0, 2, 3)]
    assert pids[0] != pids[1] == pids[2]
    assert agent.pool.in_flight == 0


def test_killed_worker_is_detected(agent: Agent) -> None:
    ctx = context(1, hang=True)
    msg = task(1)
    agent.replies += agent.pool.submit(msg, ctx, ECHO_APP)
    agent.run_until(lambda: agent.pool.in_flight == 1 and agent.pool.worker_pid(1) is not None)
    pid = agent.pool.worker_pid(1)
    assert pid is not None
    os.kill(pid, 9)
    (reply,) = agent.collect(1)
    assert reply.message.error.reason == "ClientApp worker for run 1 died (exit code -9, SIGKILL)"


def test_exception_in_the_app_is_an_error_reply_and_the_worker_keeps_serving(
    agent: Agent,
) -> None:
    ctx = context(1)
    pid = metrics(agent.ask(task(1), ctx))["pid"]
    failed = agent.ask(task(1, **{"raise": True}), ctx)
    assert failed.error.code == ErrorCode.CLIENT_APP_RAISED
    assert failed.error.reason == "RuntimeError: asked to raise"
    after = metrics(agent.ask(task(1), ctx))
    assert (after["pid"], after["calls"]) == (pid, 3)


def test_echo_app_failure_and_success(agent: Agent) -> None:
    failing, fine = context(1, fail=True), context(2, examples=3)
    for _ in range(2):
        err = agent.ask(task(1), failing, ECHO_APP)
        assert err.error.code == ErrorCode.CLIENT_APP_RAISED
        assert "ValueError: this node is configured to fail" in err.error.reason
        ok = agent.ask(task(2), fine, ECHO_APP)
        np.testing.assert_array_equal(ok.content["arrays"]["w"], np.arange(8) + 1)
        assert ok.content["metrics"]["num-examples"] == 3


def test_end_run_kills_a_hung_worker_after_the_grace(agent: Agent) -> None:
    agent.replies += agent.pool.submit(task(1), context(1, hang=True), ECHO_APP)
    agent.run_until(lambda: agent.pool.worker_pid(1) is not None)
    pid = agent.pool.worker_pid(1)
    assert pid is not None
    agent.pool.end_run(1)
    wait_gone(agent, pid)
    assert agent.replies == []  # the run is over: nothing to send for it


def test_a_run_that_returns_while_its_old_worker_hangs_gets_a_new_worker(agent: Agent) -> None:
    """A reconnect ends every run; the run's next task must not meet the unreaped worker."""
    agent.replies += agent.pool.submit(task(1), context(1, hang=True), ECHO_APP)
    agent.run_until(lambda: agent.pool.worker_pid(1) is not None)
    old = agent.pool.worker_pid(1)
    agent.pool.end_run(1)  # the hung worker gets the grace before SIGKILL: still alive
    assert old in agent.pool.live_pids
    reply = agent.ask(task(1, n=100_000), context(1), ECHO_APP)  # payload via shared memory
    assert not reply.has_error(), reply.error
    np.testing.assert_array_equal(reply.content["arrays"]["w"], np.arange(100_000) + 1)
    assert agent.pool.worker_pid(1) not in (None, old)
    wait_gone(agent, old)


def test_app_that_does_not_load_fails_the_task(agent: Agent, tmp_path: Path) -> None:
    reply = agent.ask(task(1), context(1), tmp_path)
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED
    assert "cannot read an app project" in reply.error.reason
    agent.run_until(lambda: agent.pool.live_pids == [])


def test_close_stops_every_worker() -> None:
    pool = WorkerPool(stop_grace=0.5)
    agent = Agent(pool)
    try:
        for run_id in (1, 2):
            agent.ask(task(run_id), context(run_id))
        agent.replies += pool.submit(task(3), context(3, hang=True), ECHO_APP)
        agent.run_until(lambda: pool.in_flight == 1 and len(pool.live_pids) == 3)
        pids = pool.live_pids
    finally:
        pool.close(1)
    assert pool.live_pids == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_worker_exits_when_the_agent_dies() -> None:
    script = textwrap.dedent(f"""
        import os, sys, time
        from fedzero.core import Context
        from fedzero.node.workers import WorkerPool
        pool = WorkerPool(watchdog_interval=0.1)
        pool.start_run(Context(run_id=1, node_id=1), {str(STATEFUL_APP)!r})
        print("worker-pid", pool.worker_pid(1), flush=True)
        sys.stdin.readline()
        os._exit(0)  # no clean-up: the worker must notice on its own
    """)
    pipe = subprocess.PIPE
    agent = subprocess.Popen([sys.executable, "-c", script], stdin=pipe, stdout=pipe)
    try:
        assert agent.stdout is not None
        assert agent.stdin is not None
        line = b""
        while not line.startswith(b"worker-pid "):  # skip log lines
            line = agent.stdout.readline()
            assert line, "the agent script ended early"
        pid = int(line.split()[1])
        pidfd = os.pidfd_open(pid)
        try:
            agent.stdin.write(b"\n")
            agent.stdin.flush()
            agent.wait(10)
            ready, _, _ = select.select([pidfd], [], [], 10)
            assert ready == [pidfd], "the orphaned worker is still running"
        finally:
            os.close(pidfd)
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait()
        agent.stdin.close()  # type: ignore[union-attr]
        agent.stdout.close()  # type: ignore[union-attr]


def test_round_trip_overhead_against_in_process(agent: Agent) -> None:
    """Median time agent -> worker -> agent vs handle_message in this process (1k float32)."""
    ctx, rounds = context(1), 200
    agent.ask(task(1, n=1000), ctx, ECHO_APP)  # start-up is paid once, not measured
    app = load_client_app(read_app_spec(ECHO_APP))
    local_ctx = context(1)
    pooled: list[float] = []
    local: list[float] = []
    for _ in range(rounds):
        msg = task(1, n=1000)
        frames = encode(msg)
        start = time.perf_counter()
        agent.replies += agent.pool.submit(msg, ctx, ECHO_APP, frames=frames)
        (reply,) = agent.collect(1)
        pooled.append(time.perf_counter() - start)
        assert not reply.message.has_error()
        start = time.perf_counter()
        encode(handle_message(app, decode(frames), local_ctx))
        local.append(time.perf_counter() - start)
    p, q = statistics.median(pooled) * 1e3, statistics.median(local) * 1e3
    figures = f"{p:.3f} ms via worker, {q:.3f} ms in-process, {p - q:.3f} ms extra"
    # A figure, not a timed assertion (a starved machine decides wall-clock times);
    # fedzero-bench round --isolation process measures the overhead against its floor.
    print(f"\nworker round trip, 1k float32, median of {rounds}: {figures}")


def test_expired_waiting_task_is_dropped_not_run(agent: Agent) -> None:
    ctx, fresh, stale = context(1), task(1), task(1)
    stale.metadata.created_at -= stale.metadata.ttl + 1  # the link has failed it already
    for msg in (fresh, stale):
        agent.replies += agent.pool.submit(msg, ctx, STATEFUL_APP)
    (reply,) = agent.collect(1)
    assert reply.reply_to == fresh.metadata.message_id
    agent.run_until(lambda: agent.pool.in_flight == 0)
    assert metrics(agent.ask(task(1), ctx))["calls"] == 2
