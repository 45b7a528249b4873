"""The relay floor of ``fedzero-bench round``: fedzero's hops, with nothing but pyzmq.

The same bytes through exactly the hops fedzero's architecture uses, with the
same ``+1`` compute in the client, and no fedzero code on the path:

- this process plays the ServerApp: a DEALER sends the model to the *hub*;
- the hub process (the link's place) has a ROUTER for the app and one for the
  nodes; it sends the received buffer to every node (``copy=False``, one
  buffer), collects the N replies and forwards them to the app, or, with
  aggregation, sums them into a float32 accumulator with NumPy and sends one
  mean;
- each node process adds 1 to the float32 model and replies; with process
  isolation it hands the task to its own worker process as a fedzero node
  does: it copies the payload once into a reused shared-memory segment
  (``/dev/shm``) and sends a small notice over ipc; the worker adds 1 from a
  read-only mapping of it (a new array, as a ClientApp makes), copies the
  result once into its own reused segment and answers with a notice; the node
  sends the reply to the hub from its mapping of that segment (``copy=False``).

Run as ``python -m fedzero.bench._round_relay hub|node|worker ...`` for the
peers. Every message is ``[header, payload]``: no pickle, no JSON parsing beyond
one small header, frames sent without copying.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import subprocess
import sys
import time

import numpy as np
import numpy.typing as npt
import zmq

from fedzero.core import FedzeroTimeoutError

from ._round_procs import Processes
from ._stats import BenchError, Summary

STARTUP_TIMEOUT = 300.0
"""Seconds the floors' peer processes may take to start and connect."""

_HELLO = b"hello"
_STOP = b"stop"
_TASK = b"task"


def relay_floor(
    procs: Processes,
    root: str,
    payload: memoryview,
    nodes: int,
    runs: int,
    timeout: float,
    *,
    isolation: str,
    aggregate: bool,
) -> Summary:
    """Time ``runs`` rounds of ``payload`` (float32 bytes) through the relay's hops.

    Raises:
        FedzeroTimeoutError: a peer did not connect or answer in time.
        BenchError: a reply had the wrong size or contents.
    """
    app_addr, fleet_addr = f"ipc://{root}/relay-app", f"ipc://{root}/relay-fleet"
    names = ["relay-hub"] + [f"relay-node-{i}" for i in range(nodes)]
    hub_args = [app_addr, fleet_addr, str(nodes), "1" if aggregate else "0"]
    procs.spawn("relay-hub", "fedzero.bench._round_relay", ["hub", *hub_args])
    for name in names[1:]:
        procs.spawn(name, "fedzero.bench._round_relay", ["node", fleet_addr, isolation, root, name])
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    app = ctx.socket(zmq.DEALER)
    expected = np.frombuffer(payload, dtype=np.float32) + 1
    try:
        app.setsockopt(zmq.LINGER, 0)
        app.connect(app_addr)
        app.send_multipart([_HELLO, b""])
        # The peers import fedzero.bench (and with it Numba): slow on a busy machine.
        ready = max(timeout, STARTUP_TIMEOUT)
        _recv(app, procs, ready, "the hub's ready signal (all nodes connected)")
        answers = 1 if aggregate else nodes
        samples = []
        for rep in range(runs + 1):
            start = time.perf_counter()
            app.send_multipart([_TASK, payload], copy=False)
            replies = [_recv(app, procs, timeout, "a relayed reply") for _ in range(answers)]
            if rep:  # the first repetition warms up
                samples.append(time.perf_counter() - start)
            for reply in replies:
                if not np.array_equal(np.frombuffer(reply[1].buffer, np.float32), expected):
                    raise BenchError("relay floor: a reply is not the model + 1")
        app.send_multipart([_STOP, b""])
    finally:
        app.close(linger=0)
        ctx.term()
        procs.stop(*names)
    return Summary.of(samples)


def _recv(sock: zmq.Socket[bytes], procs: Processes, timeout: float, what: str) -> list[zmq.Frame]:
    deadline = time.monotonic() + timeout
    while not sock.poll(1000):
        procs.check_alive()
        if time.monotonic() > deadline:
            raise FedzeroTimeoutError(f"relay floor: no {what} within {timeout:.0f}s")
    return sock.recv_multipart(copy=False)


def _hub(app_addr: str, fleet_addr: str, nodes: int, aggregate: bool) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    app, fleet = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    fleet.bind(fleet_addr)
    app.bind(app_addr)
    peers = [fleet.recv_multipart()[0] for _ in range(nodes)]  # each node's hello
    app_id = app.recv_multipart()[0]  # the app's first frame is a ready request
    app.send_multipart([app_id, _HELLO, b""])
    while True:
        _, kind, payload = app.recv_multipart(copy=False)
        if kind.bytes == _STOP:
            for peer in peers:
                fleet.send_multipart([peer, _STOP, b""])
            break
        for peer in peers:
            fleet.send_multipart([peer, _TASK, payload], copy=False)
        acc = None
        for _ in peers:
            _, _, reply = fleet.recv_multipart(copy=False)
            if not aggregate:
                app.send_multipart([app_id, _TASK, reply], copy=False)
                continue
            update = np.frombuffer(reply.buffer, dtype=np.float32)
            acc = update.copy() if acc is None else np.add(acc, update, out=acc)
        if acc is not None:
            acc /= np.float32(len(peers))
            app.send_multipart([app_id, _TASK, acc.data], copy=False)
    app.close(linger=1000)
    fleet.close(linger=1000)
    ctx.term()


def _segment(path: str, nbytes: int, *, create: bool) -> mmap.mmap:
    """Map a segment file: made and writable (``create``), else read-only."""
    if create:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(fd, nbytes)
        prot = mmap.PROT_READ | mmap.PROT_WRITE
    else:
        fd = os.open(path, os.O_RDONLY)
        prot = mmap.PROT_READ
    try:
        return mmap.mmap(fd, nbytes, mmap.MAP_SHARED, prot)
    finally:
        os.close(fd)


def _shm_dir(root: str) -> str:
    shm = "/dev/shm"  # noqa: S108 - the same place fedzero's node puts its segments
    return shm if os.access(shm, os.W_OK) else root


def _node(fleet_addr: str, isolation: str, root: str, name: str) -> None:
    # Stopped by PID with SIGTERM: leave through ``finally``, which stops the worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(fleet_addr)
    worker = proc = None
    base = f"{_shm_dir(root)}/fedzero-relay-{os.getpid()}-{name}"
    if isolation == "process":
        worker = ctx.socket(zmq.PAIR)
        worker.bind(f"ipc://{root}/{name}-worker")
        cmd = [sys.executable, "-m", "fedzero.bench._round_relay", "worker", root, name, base]
        proc = subprocess.Popen(cmd)  # noqa: S603 - our interpreter, our module
        worker.recv()  # the worker is connected
    sock.send_multipart([_HELLO, b""])
    down: mmap.mmap | None = None
    up: mmap.mmap | None = None
    try:
        while True:
            frames = sock.recv_multipart(copy=False)
            if frames[0].bytes == _STOP:
                break
            if worker is None:
                sock.send_multipart([_TASK, _plus_one(frames[1].buffer).data], copy=False)
                continue
            nbytes = len(frames[1])
            if down is None:
                down = _segment(f"{base}-down", nbytes, create=True)
            np.frombuffer(down, np.uint8)[:nbytes] = np.frombuffer(frames[1].buffer, np.uint8)
            del frames
            worker.send_multipart([_TASK, str(nbytes).encode()])
            worker.recv_multipart()
            if up is None:  # both sides map both segments now: no file needs to outlive us
                up = _segment(f"{base}-up", nbytes, create=False)
                _unlink(base)
            sock.send_multipart([_TASK, memoryview(up)[:nbytes]], copy=False)
    finally:
        if worker is not None and proc is not None:
            worker.send_multipart([_STOP, b""])
            proc.wait()
            worker.close(linger=0)
        sock.close(linger=0)
        ctx.term()
        _unlink(base)


def _unlink(base: str) -> None:
    for end in ("down", "up"):
        with contextlib.suppress(OSError):
            os.unlink(f"{base}-{end}")


def _worker(root: str, name: str, base: str) -> None:
    parent = os.getppid()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.connect(f"ipc://{root}/{name}-worker")
    sock.send(_HELLO)
    down: mmap.mmap | None = None
    up: mmap.mmap | None = None
    while True:
        if not sock.poll(1000):
            if os.getppid() != parent:  # the node is gone (stopped by PID): so is its worker
                break
            continue
        kind, size = sock.recv_multipart()
        if kind == _STOP:
            break
        nbytes = int(size)
        if down is None or up is None:
            down = _segment(f"{base}-down", nbytes, create=False)
            up = _segment(f"{base}-up", nbytes, create=True)
        result = _plus_one(memoryview(down)[:nbytes])
        np.frombuffer(up, np.uint8)[:nbytes] = result.view(np.uint8)
        del result
        sock.send_multipart([_TASK, size])
    sock.close(linger=0)
    ctx.term()


def _plus_one(buffer: memoryview) -> npt.NDArray[np.float32]:
    return np.frombuffer(buffer, dtype=np.float32) + np.float32(1)


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "hub":
        _hub(args[0], args[1], int(args[2]), args[3] == "1")
    elif role == "node":
        _node(*args)
    else:
        _worker(*args)
