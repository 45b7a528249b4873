"""A run's ClientApp worker process: ``python -m fedzero.node.workers._worker``.

A node agent starts one worker per run (see :class:`fedzero.node.workers._pool.WorkerPool`)
and keeps it for the run's whole life. The worker loads the run's ClientApp once,
keeps the run's :class:`~fedzero.core.Context` (so ``context.state`` persists across
the run's messages), and answers one task at a time.

The agent <-> worker protocol (control frames, ops, fields) is documented in
:mod:`fedzero.node.workers._protocol`.

The worker also exits when its parent process goes away (a watchdog thread
checks ``os.getppid()``), finishes its current task and exits on SIGTERM, and
ignores SIGINT (the agent decides when its workers stop). It never imports
Numba: only ``fedzero.core``, ``fedzero.node`` and the user's ClientApp.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import structlog
import zmq

from fedzero.core import (
    ClientApp,
    Context,
    Error,
    ErrorCode,
    ProtocolError,
    configure_logging,
    decode,
    encode,
)
from fedzero.core.bundles import load_client_app, read_app_spec
from fedzero.core.wire import frames_nbytes

from .._tasks import handle_message
from ._protocol import EXIT_FATAL, control_frame, parse_control
from ._shm import SHM_THRESHOLD, SegmentEnds

log = structlog.get_logger(__name__)

_POLL_MS: Final = 1000


def _watch_parent(ppid: int, interval: float, stop: threading.Event) -> None:
    """Exit the process at once when the parent that started us is gone."""
    while not stop.wait(interval):
        if os.getppid() != ppid:
            log.warning("worker_parent_gone", parent_pid=ppid)
            os._exit(EXIT_FATAL)


class _Worker:
    """The worker's loop: one DEALER, one app, one Context."""

    def __init__(
        self, sock: zmq.Socket[bytes], stop: threading.Event, shm: SegmentEnds | None
    ) -> None:
        self._handle = handle_message
        self._sock = sock
        self._stop = stop
        self._shm = shm
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
            self._task(header, payload)
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
            raise ProtocolError(f"unknown op {op!r:.40}")
        return True

    def _need_context(self) -> Context:
        return self._loaded()[1]

    def _loaded(self) -> tuple[ClientApp, Context]:
        if self._app is None or self._context is None:
            raise ProtocolError("a task or update came before init")
        return self._app, self._context

    def _task(self, header: dict[str, Any], payload: Sequence[Any]) -> None:
        frames = self._answer(header, payload)  # the task's views die on return
        fields: dict[str, Any] = {}
        if self._shm is not None:
            if frames_nbytes(frames[1:]) >= SHM_THRESHOLD:
                fields["shm"] = self._shm.writer.write(frames[1:])
                del frames[1:]
            fields.update(self._shm.bookkeeping())
        frames.insert(0, control_frame("reply", **fields))
        self._sock.send_multipart(frames, copy=False)

    def _answer(self, header: dict[str, Any], payload: Sequence[Any]) -> list[Any]:
        """The encoded reply to the task in ``payload`` (inline, or in a shm segment)."""
        app, context = self._loaded()
        shared = self._shm.receive(header) if self._shm is not None else None
        msg = decode([*payload[:1], *shared] if shared is not None else payload)
        reply = self._handle(app, msg, context)
        try:
            return encode(reply)
        except Exception as exc:  # e.g. an array of a dtype the wire does not carry
            reason = f"cannot encode the ClientApp's reply: {type(exc).__name__}: {exc}"
            return encode(msg.create_error_reply(Error(ErrorCode.CLIENT_APP_RAISED, reason)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run a worker until told to stop; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m fedzero.node.workers._worker")
    parser.add_argument("--endpoint", required=True, help="the agent's ipc:// ROUTER")
    parser.add_argument("--identity", required=True, help="this worker's routing id")
    parser.add_argument("--parent-pid", type=int, required=True, help="exit when it is gone")
    parser.add_argument("--watchdog-interval", type=float, default=1.0)
    parser.add_argument("--log-level", default=None)
    parser.add_argument("--shm-dir", default=None, help="this worker's shared-memory directory")
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
    shm = SegmentEnds.of(Path(args.shm_dir), agent=False) if args.shm_dir else None
    try:
        return _Worker(sock, stop, shm).serve()
    finally:
        if shm is not None:
            shm.close(remove=False)
        stop.set()
        sock.close(linger=2000)
        ctx.term()


if __name__ == "__main__":
    sys.exit(main())
