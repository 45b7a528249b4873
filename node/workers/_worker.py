"""A run's ClientApp worker process: ``python -m fedzero.node.workers._worker``.

A node agent starts one worker per run (see :class:`fedzero.node.workers._pool.WorkerPool`)
and keeps it for the run's whole life. The worker loads the run's ClientApp once,
keeps the run's :class:`~fedzero.core.Context` (so ``context.state`` persists across
the run's messages), and answers one task at a time.

Agent <-> worker protocol
-------------------------

The agent binds a ROUTER on ``ipc://<private temp dir>/workers``; each worker
connects a DEALER whose routing id is given on its command line
(``run-<run_id>-<generation>``). Every ZeroMQ message starts with one control
frame, a UTF-8 JSON object ``{"fzw": 1, "op": <op>, ...fields}``; a task and a
reply are followed by the frames of a fedzero Message exactly as
:func:`fedzero.core.encode` makes them (sent with ``copy=False``, decoded
zero-copy with :func:`fedzero.core.decode`: no pickle, and the tensor bytes
cross the ipc hop with one kernel copy).

======================  =====================================================
worker -> agent         fields
======================  =====================================================
``hello``               ``pid``: sent once, on connecting
``reply``               (none); followed by the reply Message frames
``fatal``               ``reason``: the worker cannot go on (the app does not
                        load, a protocol error) and exits with code 2
======================  =====================================================

======================  =====================================================
agent -> worker         fields
======================  =====================================================
``init``                ``run_id``, ``node_id``, ``node_config``,
                        ``run_config``, ``app_dir``: answer to ``hello``; the
                        worker loads the ClientApp and builds the Context
``update``              ``node_id``, ``run_config``: the agent's view changed
                        (re-registration, a new ``run`` control message)
``task``                (none); followed by the task Message frames; answered
                        by exactly one ``reply``
``stop``                (none): exit after the current task, with code 0
======================  =====================================================

The worker also exits when its parent process goes away (a watchdog thread
checks ``os.getppid()``), finishes its current task and exits on SIGTERM, and
ignores SIGINT (the agent decides when its workers stop). It never imports
Numba: only ``fedzero.core``, ``fedzero.node`` and the user's ClientApp.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, Final

import structlog
import zmq

from fedzero.core import (
    ClientApp,
    Context,
    DeserializationError,
    Error,
    ErrorCode,
    configure_logging,
    decode,
    encode,
)
from fedzero.core.bundles import load_client_app, read_app_spec
from fedzero.core.wire import as_memoryview, loads_strict

from .._tasks import handle_message

log = structlog.get_logger(__name__)

WORKER_PROTOCOL: Final = 1
"""Version of the agent <-> worker control header (field ``"fzw"``)."""

EXIT_FATAL: Final = 2
"""Exit code of a worker that could not go on (see the ``fatal`` op)."""

_POLL_MS: Final = 1000


def control_frame(op: str, **fields: Any) -> bytes:
    """Encode one agent <-> worker control frame."""
    return json.dumps({"fzw": WORKER_PROTOCOL, "op": op, **fields}, separators=(",", ":")).encode()


def parse_control(frame: object) -> dict[str, Any]:
    """Parse an agent <-> worker control frame.

    Raises:
        DeserializationError: the frame is not a control header of this protocol
            version (a ``ValueError``).
    """
    header = loads_strict(as_memoryview(frame, 0), what="worker control frame")
    if not isinstance(header, dict) or header.get("fzw") != WORKER_PROTOCOL:
        raise DeserializationError(f"worker control frame: no fzw={WORKER_PROTOCOL}")
    if not isinstance(header.get("op"), str):
        raise DeserializationError("worker control frame: no op")
    return header


def _watch_parent(ppid: int, interval: float, stop: threading.Event) -> None:
    """Exit the process at once when the parent that started us is gone."""
    while not stop.wait(interval):
        if os.getppid() != ppid:
            log.warning("worker_parent_gone", parent_pid=ppid)
            os._exit(EXIT_FATAL)


class _Worker:
    """The worker's loop: one DEALER, one app, one Context."""

    def __init__(self, sock: zmq.Socket[bytes], stop: threading.Event) -> None:
        self._handle = handle_message
        self._sock = sock
        self._stop = stop
        self._app: ClientApp | None = None
        self._context: Context | None = None

    def serve(self) -> int:
        self._sock.send(control_frame("hello", pid=os.getpid()))
        while not self._stop.is_set():
            if not self._sock.poll(_POLL_MS):
                continue
            frames = self._sock.recv_multipart(copy=False)
            try:
                header = parse_control(frames[0])
                if not self._on(header, frames[1:]):
                    return 0
            except Exception as exc:  # anything unexpected ends this worker, loudly
                reason = f"{type(exc).__name__}: {exc}"[:2000]
                log.error("worker_fatal", reason=reason)
                self._sock.send(control_frame("fatal", reason=reason))
                return EXIT_FATAL
        return 0

    def _on(self, header: dict[str, Any], payload: Sequence[zmq.Frame]) -> bool:
        op = header["op"]
        if op == "task":
            self._task(payload)
        elif op == "init":
            spec = read_app_spec(header["app_dir"])
            self._app = load_client_app(spec)
            self._context = Context(
                run_id=header["run_id"],
                node_id=header["node_id"],
                node_config=header["node_config"],
                run_config=header["run_config"],
            )
            structlog.contextvars.bind_contextvars(run_id=header["run_id"])
            log.info("worker_ready", app=spec.name, pid=os.getpid())
        elif op == "update":
            context = self._need_context()
            context.node_id = header["node_id"]
            context.run_config = header["run_config"]
        elif op == "stop":
            return False
        else:
            raise ValueError(f"unknown op {op!r:.40}")
        return True

    def _need_context(self) -> Context:
        if self._context is None:
            raise ValueError("a task or update came before init")
        return self._context

    def _task(self, payload: Sequence[zmq.Frame]) -> None:
        context = self._need_context()
        assert self._app is not None  # noqa: S101 - set with the context
        msg = decode(payload)
        reply = self._handle(self._app, msg, context)
        try:
            frames: list[Any] = encode(reply)
        except Exception as exc:  # e.g. an array of a dtype the wire does not carry
            reason = f"cannot encode the ClientApp's reply: {type(exc).__name__}: {exc}"
            frames = encode(msg.create_error_reply(Error(ErrorCode.CLIENT_APP_RAISED, reason)))
        frames.insert(0, control_frame("reply"))
        self._sock.send_multipart(frames, copy=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker until told to stop; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m fedzero.node.workers._worker")
    parser.add_argument("--endpoint", required=True, help="the agent's ipc:// ROUTER")
    parser.add_argument("--identity", required=True, help="this worker's routing id")
    parser.add_argument("--parent-pid", type=int, required=True, help="exit when it is gone")
    parser.add_argument("--watchdog-interval", type=float, default=1.0)
    parser.add_argument("--log-level", default=None)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    structlog.contextvars.bind_contextvars(worker=args.identity)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if os.getppid() != args.parent_pid:
        return EXIT_FATAL  # the parent died before we got here
    threading.Thread(
        target=_watch_parent,
        args=(args.parent_pid, args.watchdog_interval, stop),
        name="fedzero-parent-watchdog",
        daemon=True,
    ).start()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, args.identity.encode())
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(args.endpoint)
    try:
        return _Worker(sock, stop).serve()
    finally:
        stop.set()
        sock.close(linger=2000)
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())
