"""How a node runs ClientApps: in-process threads, or one worker process per run.

Both runners are driven by the agent's IO thread and hand back replies as
:class:`Outgoing` (the frames to send, and the id of the task they answer).

- :class:`ThreadRunner` calls a ClientApp object on one worker thread per run
  (serial within a run, concurrent across runs). For embedded nodes and the
  Python API: no extra process, no start-up cost.
- :class:`ProcessRunner` runs each run's ClientApp in a worker process that
  lives as long as the run (:class:`~fedzero.node.workers.WorkerPool`); tensors cross over
  ``ipc://`` with zero-copy frames. A crash fails only the task it was running,
  and the next task gets a fresh worker. The app folder is per run, so each run
  can bring its own app (bundles).
"""

from __future__ import annotations

import dataclasses
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import structlog
import zmq

from fedzero.core import ClientApp, ConfigurationError, Context, Message, encode
from fedzero.core.wire import frames_nbytes

from .workers import WorkerPool

log = structlog.get_logger(__name__)

Handler = Callable[[ClientApp, Message, Context], Message]
"""Turns (app, message, context) into a reply, errors included (``handle_message``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Outgoing:
    """A reply ready to go to the link."""

    reply_to: str
    frames: list[Any]

    @property
    def nbytes(self) -> int:
        """Total size of the frames (for upload credit)."""
        return frames_nbytes(self.frames)


class Runner(Protocol):
    """What the agent needs from a way of running ClientApps."""

    def pollables(self) -> list[zmq.Socket[bytes] | int]:
        """Sockets/fds the agent polls for this runner (may be empty)."""
        ...

    def submit(
        self, msg: Message, ctx: Context, frames: Sequence[Any], app_dir: Path | None
    ) -> list[Outgoing]:
        """Run ``msg`` for its run; return replies that are ready at once."""
        ...

    def collect(self, ready: set[Any], now: float) -> list[Outgoing]:
        """Replies that became ready (``ready``: the pollables that fired)."""
        ...

    def end_run(self, run_id: int) -> None:
        """Free the run's resources."""
        ...

    @property
    def in_flight(self) -> int:
        """Tasks accepted and not yet answered."""
        ...

    def close(self, timeout: float) -> None:
        """Stop everything."""
        ...


class ThreadRunner:
    """ClientApp calls on one thread per run, in this process.

    Args:
        app: the ClientApp.
        wake: called from a worker thread when a reply is ready.
        handle: turns (app, message, context) into a reply (errors included).
    """

    def __init__(self, app: ClientApp, wake: Callable[[], None], handle: Handler) -> None:
        self._app = app
        self._wake = wake
        self._handle = handle
        self._pools: dict[int, ThreadPoolExecutor] = {}
        self._done: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._busy = 0

    def pollables(self) -> list[zmq.Socket[bytes] | int]:
        """None: replies arrive through the agent's wake-up."""
        return []

    def submit(
        self, msg: Message, ctx: Context, frames: Sequence[Any], app_dir: Path | None
    ) -> list[Outgoing]:
        """Queue the call on the run's thread."""
        pool = self._pools.get(ctx.run_id)
        if pool is None:
            pool = self._pools[ctx.run_id] = ThreadPoolExecutor(
                1, thread_name_prefix=f"fedzero-run-{ctx.run_id}"
            )
        self._busy += 1
        pool.submit(self._call, msg, ctx)
        return []

    def _call(self, msg: Message, ctx: Context) -> None:
        started = time.perf_counter()
        self._done.put(self._handle(self._app, msg, ctx))
        secs = round(time.perf_counter() - started, 4)
        log.debug("task_done", run_id=ctx.run_id, message_type=msg.metadata.message_type, secs=secs)
        self._wake()

    def collect(self, ready: set[Any], now: float) -> list[Outgoing]:
        """Encode the replies the threads finished."""
        out: list[Outgoing] = []
        while True:
            try:
                reply = self._done.get_nowait()
            except queue.Empty:
                return out
            self._busy -= 1
            out.append(Outgoing(reply.metadata.reply_to_message_id, encode(reply)))

    def end_run(self, run_id: int) -> None:
        """Let the run's thread finish what it has; forget it."""
        pool = self._pools.pop(run_id, None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    @property
    def in_flight(self) -> int:
        """Calls submitted and not yet collected."""
        return self._busy

    def close(self, timeout: float) -> None:
        """Stop taking work (running calls finish in their threads)."""
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


class ProcessRunner:
    """One worker process per run, for the run's whole life.

    Args:
        ctx: the agent's zmq context (the pool's socket lives on the IO thread).
        app_dir: the app folder for every run (None: each task names its own).
        log_level: passed to the workers.
    """

    def __init__(
        self, ctx: zmq.Context[zmq.Socket[bytes]], app_dir: Path | None, log_level: str | None
    ) -> None:
        self._pool = WorkerPool(zmq_context=ctx, log_level=log_level)
        self._app_dir = app_dir

    def pollables(self) -> list[zmq.Socket[bytes] | int]:
        """The pool's socket and its worker-exit fd."""
        return self._pool.pollables()

    def submit(
        self, msg: Message, ctx: Context, frames: Sequence[Any], app_dir: Path | None
    ) -> list[Outgoing]:
        """Forward the task's frames to the run's worker (zero-copy)."""
        folder = app_dir or self._app_dir
        if folder is None:
            raise ConfigurationError("no app folder for this run")
        return [
            Outgoing(r.reply_to, r.frames)
            for r in self._pool.submit(msg, ctx, folder, frames=frames)
        ]

    def collect(self, ready: set[Any], now: float) -> list[Outgoing]:
        """Replies from workers, and error replies for workers that died."""
        replies = self._pool.tick(now)
        for item in self._pool.pollables():
            if item in ready:
                replies += self._pool.on_readable(item)
        return [Outgoing(r.reply_to, r.frames) for r in replies]

    def end_run(self, run_id: int) -> None:
        """Stop the run's worker."""
        self._pool.end_run(run_id)

    @property
    def in_flight(self) -> int:
        """Tasks at workers and not yet answered."""
        return self._pool.in_flight

    def close(self, timeout: float) -> None:
        """Stop every worker."""
        self._pool.close(timeout)
