"""Under attack, a link process stays within its configured windows + 200 MB.

One real link process (its memory is what is measured), two legit nodes and a
ServerApp doing link-side FedAvg rounds that must stay exact, and between the
rounds the attacks that grew the link's memory before: an uncredited 200 MB
reply, fat hellos, a node that never reads its tasks, a fan-out to 70,000 ids.
The link's peak resident memory (``VmHWM``, reset after warm-up through
``/proc/<pid>/clear_refs``) may exceed its warm resident memory by at most the
upload window it was configured with plus 200 MB.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from fedzero.core import (
    ArrayRecord,
    ClientApp,
    Context,
    ErrorCode,
    FedzeroError,
    Grid,
    Message,
    MetricRecord,
    RecordDict,
    encode,
)
from fedzero.core.wire import control
from fedzero.node import NodeAgent
from tests.helpers import processes, socket_dir, wait_for

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc"),
]

MB = 2**20
WINDOW_MB = 32  # --max-upload-mb: large uploads admitted at once
HEARTBEAT_TIMEOUT = 5.0
WAIT = 20 * HEARTBEAT_TIMEOUT

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = {
        k: v + np.float32(context.node_config["shift"]) for k, v in msg.content["arrays"].items()
    }
    metrics = MetricRecord({"num-examples": int(context.node_config["examples"])})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}))


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} for {pid}")


def _recv(sock: zmq.Socket[bytes], kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000) + 1):
            header = json.loads(sock.recv_multipart()[0])
            if header["kind"] == kind:
                return dict(header)
    raise AssertionError(f"no {kind} within {WAIT}s")


def _register(sock: zmq.Socket[bytes], **fields: Any) -> dict[str, Any]:
    sock.send_multipart(control("hello", node_id=None, node_config={}, version="rogue/1", **fields))
    return _recv(sock, "welcome")


def _legit_round(grid: Grid, nodes: list[int], rnd: int) -> None:
    """One link-side FedAvg round: (1 x (w + 1) + 3 x (w + 2)) / 4, bit for bit."""
    w = np.arange(1 << 16, dtype=np.float32)
    content = RecordDict({"arrays": ArrayRecord({"w": w})})
    messages = [grid.create_message(content, "train", n, group_id=str(rnd)) for n in nodes]
    spec = {"method": "fedavg", "arrays_key": "arrays", "weight_key": "num-examples"}
    result = grid.send_and_receive(messages, timeout=WAIT, aggregate=spec)
    assert result.replies == 2, result.failures
    assert result.arrays is not None
    want = ((w.astype(np.float64) + 1) * 1 + (w.astype(np.float64) + 2) * 3) / 4
    assert np.array_equal(result.arrays["w"], want.astype(np.float32))


def test_attacks_keep_the_link_within_its_windows_and_legit_rounds_exact() -> None:
    with socket_dir() as tmp, processes() as procs:
        flags = {
            "--fleet-address": f"ipc://{tmp}/fleet",
            "--app-address": f"ipc://{tmp}/app",
            "--control-address": f"ipc://{tmp}/control",
            "--state-dir": str(tmp / "state"),
            "--http-address": "",
            "--heartbeat-interval": "0.5",
            "--heartbeat-timeout": str(HEARTBEAT_TIMEOUT),
            "--max-upload-mb": str(WINDOW_MB),
            "--max-concurrent-uploads": "2",
            "--log-level": "info",  # kernels_prepared: the warm-up is over
        }
        args = ["-m", "fedzero.link", *(x for pair in flags.items() for x in pair), "--no-warmup"]
        link = procs.spawn(args, tmp / "link.log")
        nodes = [
            NodeAgent(app, f"ipc://{tmp}/fleet", node_config=cfg).start()
            for cfg in ({"shift": 1.0, "examples": 1}, {"shift": 2.0, "examples": 3})
        ]
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            with Grid(f"ipc://{tmp}/app", connect_timeout=WAIT) as grid:
                legit = grid.get_node_ids(min_nodes=2, timeout=WAIT)
                _legit_round(grid, legit, 0)  # warm: the round's kernels compile
                # ...in the background (the round itself ran on NumPy stand-ins): the
                # compiler's memory is warm-up, not growth under attack.
                log = tmp / "link.log"
                wait_for(lambda: "kernels_prepared" in log.read_text(), "kernels", WAIT)
                _legit_round(grid, legit, 1)
                warm = _status(link.pid, "VmRSS")
                Path(f"/proc/{link.pid}/clear_refs").write_text("5")  # reset VmHWM
                _attack(ctx, tmp, grid, legit)
                peak = _status(link.pid, "VmHWM")
        finally:
            ctx.destroy(linger=0)
            for node in nodes:
                node.stop()
        assert link.poll() is None, "the link died"
    grown = (peak - warm) / MB
    print(f"link warm RSS {warm / MB:.0f} MiB, peak under attack {peak / MB:.0f} MiB")
    assert grown <= WINDOW_MB + 200, f"the link grew by {grown:.0f} MB under attack"


def _attack(ctx: zmq.Context[zmq.Socket[bytes]], tmp: Path, grid: Grid, legit: list[int]) -> None:
    rogue = ctx.socket(zmq.DEALER)
    rogue.connect(f"ipc://{tmp}/fleet")
    rogue_id = _register(rogue)["node_id"]

    # An uncredited 200 MB reply to a real task: refused before decoding.
    task = grid.create_message(RecordDict(), "train", rogue_id, group_id="x")
    (task_id,) = grid.push_messages([task])
    header = _recv(rogue, "message")  # the task arrived
    assert header["metadata"]["message_id"] == task_id
    task.metadata.message_id = task_id
    huge = ArrayRecord({"w": np.ones(50 * MB, np.float32)})  # 200 MiB
    rogue.send_multipart(encode(task.create_reply(RecordDict({"arrays": huge}))), copy=False)
    assert "credit" in _recv(rogue, "refused")["reason"]
    del huge
    _legit_round(grid, legit, 1)

    # Fat hellos: 60 x 8 MB node configs, each refused before parsing.
    fat = {"blob": "x" * (8 * MB)}
    for _ in range(60):
        sock = ctx.socket(zmq.DEALER)
        sock.connect(f"ipc://{tmp}/fleet")
        sock.send_multipart(control("hello", node_id=None, node_config=fat, version="x"))
        assert _recv(sock, "refused")["code"] == ErrorCode.OVERLOADED
        sock.close(linger=0)
    _legit_round(grid, legit, 2)

    # A node that never reads: 20 tasks of 16 MB pushed to it; the link fails them
    # once the node's unanswered bytes pass the window, instead of queueing them.
    slow = ctx.socket(zmq.DEALER)
    slow.setsockopt(zmq.RCVHWM, 1)
    slow.connect(f"ipc://{tmp}/fleet")
    slow_id = _register(slow)["node_id"]
    big = RecordDict({"arrays": ArrayRecord({"w": np.zeros(4 * MB, np.float32)})})
    ids = grid.push_messages(
        [grid.create_message(big, "train", slow_id, group_id=f"s{i}") for i in range(20)]
    )
    answers = grid.receive(ids[4:], timeout=WAIT)
    assert answers, "no task of the never-reading node failed"
    assert all(a.error.code == ErrorCode.OVERLOADED for a in answers)
    _legit_round(grid, legit, 3)

    # A fan-out to 70,000 ids, from another ServerApp: refused at once.
    with Grid(f"ipc://{tmp}/app", connect_timeout=WAIT) as flooder:
        ids = [i + 1 for i in range(70_000)]
        flooder.push_messages([flooder.create_message(RecordDict(), "train", i) for i in ids])
        with pytest.raises(FedzeroError, match=r"exceed|not registered"):
            flooder.get_node_ids(timeout=WAIT)  # the refusal arrives with the next answer
    _legit_round(grid, legit, 4)
    rogue.close(linger=0)
    slow.close(linger=0)
