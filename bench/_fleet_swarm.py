"""A swarm of fleet nodes in one process, for ``fedzero-bench fleet``.

Each node is its own TCP connection to the link's fleet endpoint, spoken in
ZMTP 3.1 directly (greeting, NULL handshake, ``READY`` as a DEALER, frames,
``PING``/``PONG`` commands) by asyncio: thousands of nodes cost one process
and no libzmq socket each. Above ZMTP it speaks the node side of PROTOCOL.md
(section 5.2): ``hello`` until ``welcome`` (with jittered back-off, and the
``retry_after`` of a busy link), a ``ping`` every ``heartbeat_interval``, a
reply to every task with the received arrays + 1 and the metric
``num-examples`` = 1, ``hello`` again on ``reregister``.

Started as ``python -m fedzero.bench._fleet_swarm HOST PORT FIRST COUNT STATUS``;
it writes its counters as JSON to ``STATUS`` every half second and once more
when it gets SIGTERM, then exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from typing import Any, Final

import numpy as np

_GREETING: Final = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00")
_GREETING_FULL: Final = _GREETING + b"\x00" + b"\x00" * 31
_READY: Final = b"\x05READY\x0bSocket-Type" + (6).to_bytes(4, "big") + b"DEALER"
_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04
_CONNECTS_AT_ONCE: Final = 256  # TCP handshakes in flight (the link's accept backlog)
_HELLO_WAIT: Final = (2.0, 30.0)  # first and longest wait for a welcome (doubles, jitter)
_DTYPES: Final = {"F32": np.float32, "F64": np.float64, "F16": np.float16}

stats: Counter[str] = Counter()
times: dict[str, float] = {}
"""Wall-clock times: ``start`` (first connect), ``registered`` (the last first welcome)."""


def _frame(data: bytes | memoryview, flags: int) -> list[bytes | memoryview]:
    size = len(data)
    if size > 255:
        return [bytes([flags | _LONG]) + size.to_bytes(8, "big"), data]
    return [bytes([flags, size]), data]


def _control(kind: str, **fields: Any) -> bytes:
    return json.dumps({"v": 1, "kind": kind, **fields}, separators=(",", ":")).encode()


class SwarmNode:
    """One node: a ZMTP connection and the node side of the fleet protocol."""

    def __init__(self, node_id: int, host: str, port: int) -> None:
        self.node_id = node_id
        self._host, self._port = host, port
        self._writer: asyncio.StreamWriter | None = None
        self._welcomed = asyncio.Event()
        self._interval = 1.0
        self._timeout = 3.0
        self._last_heard = 0.0
        self._retry_after = 0.0
        self.registered_at = 0.0

    async def run(self, gate: asyncio.Semaphore) -> None:
        """Connect, register, then ping and answer until cancelled."""
        async with gate:
            reader, writer = await asyncio.open_connection(self._host, self._port)
            self._writer = writer
            writer.write(_GREETING_FULL)
            writer.writelines(_frame(_READY, _COMMAND))
            await reader.readexactly(64)
        stats["connected"] += 1
        receiving = asyncio.create_task(self._receive(reader))
        try:
            await self._register()
            await self._heartbeat()
        finally:
            receiving.cancel()

    def _send(self, frames: list[bytes | memoryview]) -> None:
        if self._writer is None:
            return
        parts: list[bytes | memoryview] = []
        for i, data in enumerate(frames):
            parts += _frame(data, _MORE if i < len(frames) - 1 else 0)
        self._writer.writelines(parts)

    async def _register(self) -> None:
        wait = _HELLO_WAIT[0]
        while not self._welcomed.is_set():
            self._send([_control("hello", node_id=self.node_id, node_config={}, version="swarm")])
            stats["hellos"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._welcomed.wait(), wait * random.uniform(0.5, 1.0))
            if self._retry_after:
                await asyncio.sleep(self._retry_after * random.uniform(1.0, 2.0))
                self._retry_after = 0.0
            wait = min(_HELLO_WAIT[1], wait * 2)

    async def _heartbeat(self) -> None:
        await asyncio.sleep(self._interval * random.random())
        while True:
            if not self._welcomed.is_set():  # reregister asked: hello again
                await self._register()
            silent = time.monotonic() - self._last_heard
            if silent > self._timeout:
                stats["link_silent"] += 1
                self._last_heard = time.monotonic()
            self._send([_control("ping")])
            stats["pings"] += 1
            await asyncio.sleep(self._interval)

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        message: list[bytes] = []
        while True:
            flags = (await reader.readexactly(1))[0]
            size_bytes = await reader.readexactly(8 if flags & _LONG else 1)
            data = await reader.readexactly(int.from_bytes(size_bytes, "big"))
            if flags & _COMMAND:
                if data.startswith(b"\x04PING"):  # ZMTP heartbeat: PONG with its context
                    self._send_command(b"\x04PONG" + data[7:])
                continue
            message.append(data)
            if not flags & _MORE:
                self._last_heard = time.monotonic()
                self._on_message(message)
                message = []

    def _send_command(self, body: bytes) -> None:
        if self._writer is not None:
            self._writer.writelines(_frame(body, _COMMAND))

    def _on_message(self, frames: list[bytes]) -> None:
        header = json.loads(frames[0])
        kind = header["kind"]
        stats[f"in_{kind}"] += 1
        if kind == "welcome":
            if self.registered_at:
                stats["rewelcomes"] += 1
            else:
                self.registered_at = time.monotonic()
                stats["registered"] += 1
                times["registered"] = time.time()
            self._interval = float(header["heartbeat_interval"])
            self._timeout = float(header["heartbeat_timeout"])
            self._welcomed.set()
        elif kind == "reregister":
            self._welcomed.clear()
        elif kind == "refused":
            stats[f"refused_{header['code']}"] += 1
            self._retry_after = float(header.get("retry_after", 0.0))
        elif kind == "message":
            self._reply(header, frames)

    def _reply(self, header: dict[str, Any], frames: list[bytes]) -> None:
        meta = header["metadata"]
        arrays = [r for r in header["content"] if r["type"] == "array"]
        st_header = json.loads(frames[1][8:]) if len(frames) > 1 else {}
        order = sorted(
            (v["data_offsets"][0], k) for k, v in st_header.items() if k != "__metadata__"
        )
        out: list[bytes | memoryview] = []
        for i, (_, key) in enumerate(order):
            dtype = _DTYPES[st_header[key]["dtype"]]
            out.append((np.frombuffer(frames[2 + i], dtype=dtype) + 1).tobytes())
        now = time.time()
        reply_meta = {
            **meta,
            "message_id": uuid.uuid4().hex,
            "src_node_id": self.node_id,
            "dst_node_id": 0,
            "reply_to_message_id": meta["message_id"],
            "created_at": max(now, meta["created_at"]),
        }
        metrics = {"key": "metrics", "type": "metric", "items": {"num-examples": 1}}
        reply = {"v": 1, "kind": "message", "metadata": reply_meta, "content": [*arrays, metrics]}
        head = json.dumps(reply, separators=(",", ":")).encode()
        self._send([head, *frames[1:2], *out])
        stats["replies"] += 1


def _write_status(path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump({"pid": os.getpid(), "times": times, **stats}, out)
    os.replace(tmp, path)


async def _main(host: str, port: int, first: int, count: int, status: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    gate = asyncio.Semaphore(_CONNECTS_AT_ONCE)
    nodes = [SwarmNode(first + i, host, port) for i in range(count)]
    times["start"] = time.time()
    tasks = [asyncio.create_task(node.run(gate)) for node in nodes]
    while not stop.is_set():
        _write_status(status)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                stats[f"error_{type(task.exception()).__name__}"] += 1
        tasks = [t for t in tasks if not t.done()]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    for task in tasks:
        task.cancel()
    _write_status(status)


if __name__ == "__main__":
    _host, _port, _first, _count, _status = sys.argv[1:6]
    asyncio.run(_main(_host, int(_port), int(_first), int(_count), _status))
