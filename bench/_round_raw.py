"""The raw ZeroMQ reference for ``fedzero-bench round``.

A ROUTER in the bench process sends one buffer to each of N DEALER peer
processes (``copy=False``) and receives an equally sized reply from each, on
the same transport as the federation: the time a round's bytes take with
nothing but pyzmq. Run as ``python -m fedzero.bench._round_raw ADDRESS NBYTES``
for one peer, which echoes a prebuilt reply until it receives an empty frame.
"""

from __future__ import annotations

import sys
import time

import zmq

from fedzero.core import FedzeroTimeoutError

from ._round_procs import Processes
from ._stats import BenchError, Summary

_HELLO = b"hello"
STARTUP_TIMEOUT = 300.0  # the peers import fedzero.bench (and Numba): slow on a busy machine


def raw_reference(
    procs: Processes,
    address: str,
    payload: memoryview,
    peers: int,
    runs: int,
    timeout: float,
) -> Summary:
    """Time sending ``payload`` to ``peers`` processes and receiving equal replies.

    Args:
        procs: where the peer processes are started (and stopped at the end).
        address: the ROUTER's bind address, e.g. ``ipc:///tmp/x/raw``.
        payload: the bytes sent to every peer (the same buffer each time).
        peers: how many peer processes.
        runs: timed repetitions (after one untimed warm-up).
        timeout: seconds allowed for the peers to connect, and for each repetition.

    Returns:
        The repetition times.

    Raises:
        TimeoutError: a peer did not connect or answer in time.
    """
    nbytes = payload.nbytes
    names = [f"raw-peer-{i}" for i in range(peers)]
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    try:
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.bind(address)
        for name in names:
            procs.spawn(name, "fedzero.bench._round_raw", [address, str(nbytes)])
        ids = _wait_hellos(router, procs, peers, max(timeout, STARTUP_TIMEOUT))
        samples = []
        for rep in range(runs + 1):
            start = time.perf_counter()
            for rid in ids:
                router.send_multipart([rid, payload], copy=False)
            _receive_replies(router, ids, nbytes, timeout)
            if rep:  # the first repetition warms up
                samples.append(time.perf_counter() - start)
        for rid in ids:  # let the peers exit on their own
            router.send_multipart([rid, b""])
        router.setsockopt(zmq.LINGER, 1000)
    finally:
        router.close(linger=0)
        ctx.term()
        procs.stop(*names)
    return Summary.of(samples)


def _wait_hellos(
    router: zmq.Socket[bytes], procs: Processes, peers: int, timeout: float
) -> list[bytes]:
    ids: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(ids) < peers:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FedzeroTimeoutError(f"only {len(ids)} of {peers} raw zmq peers connected")
        if router.poll(min(1000, max(1, int(left * 1000)))):
            rid, hello = router.recv_multipart()
            if hello == _HELLO:
                ids.append(rid)
        else:
            procs.check_alive()
    return ids


def _receive_replies(
    router: zmq.Socket[bytes], ids: list[bytes], nbytes: int, timeout: float
) -> None:
    waiting = set(ids)
    deadline = time.monotonic() + timeout
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0 or not router.poll(max(1, int(left * 1000))):
            raise FedzeroTimeoutError(f"{len(waiting)} raw zmq peers did not answer in {timeout}s")
        rid, reply = router.recv_multipart(copy=False)
        if len(reply) != nbytes:
            raise BenchError(f"raw zmq peer replied {len(reply)} bytes, expected {nbytes}")
        waiting.discard(rid.bytes)


def _peer(address: str, nbytes: int) -> None:
    """Echo a prebuilt reply of ``nbytes`` to every message; stop on an empty one."""
    reply = b"\x5a" * nbytes  # written pages: not the shared zero page of bytes(n)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        sock.send(_HELLO)
        while True:
            frame = sock.recv(copy=False)
            if len(frame) == 0:
                return
            del frame
            sock.send(reply, copy=False)
    finally:
        sock.close(linger=0)
        ctx.term()


if __name__ == "__main__":
    _peer(sys.argv[1], int(sys.argv[2]))
