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

Both bound each task by its deadline (:func:`._tasks.task_deadline`): past it,
the task is answered with ``MESSAGE_EXPIRED``; a worker process is killed, a
thread is abandoned (Python cannot stop it; its late answer is dropped, and the
run's next task goes to a fresh thread).
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog
import zmq

from fedzero.core import ClientApp, ConfigurationError, Context, Error, ErrorCode, Message, encode
from fedzero.core.wire import frames_nbytes

from ._tasks import Deadline, failure_reply, task_deadline
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

    def end_run(self, run_id: int, why: str) -> None:
        """Free the run's resources now (``why``: for the log)."""
        ...

    def next_due(self) -> float | None:
        """The earliest task deadline (monotonic), if a task is in flight."""
        ...

    @property
    def in_flight(self) -> int:
        """Tasks accepted and not yet answered."""
        ...

    def close(self, timeout: float) -> None:
        """Stop everything."""
        ...


@dataclasses.dataclass(eq=False, slots=True)
class _Call:
    """One task for a run's thread."""

    msg: Message
    ctx: Context
    deadline: Deadline
    started: bool = False
    abandoned: bool = False


class _RunThread:
    """One daemon thread that runs one run's calls in order (a hung app cannot block exit)."""

    def __init__(self, run_id: int, work: Callable[[_Call], None]) -> None:
        self._work = work
        self._cond = threading.Condition()
        self._calls: collections.deque[_Call] = collections.deque()
        self._closed = False
        name = f"fedzero-run-{run_id}"
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def put(self, call: _Call) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify()

    def close(self) -> list[_Call]:
        """Take no more calls; return those it had not started."""
        with self._cond:
            self._closed = True
            left = list(self._calls)
            self._calls.clear()
            self._cond.notify()
        return left

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._calls and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                call = self._calls.popleft()
                call.started = True
                call.deadline = call.deadline.started(time.monotonic())
            if not call.abandoned:  # its deadline passed while it waited
                self._work(call)


class ThreadRunner:
    """ClientApp calls on one thread per run, in this process.

    A call still running at its task's deadline is abandoned (a thread cannot
    be stopped): the task is answered with ``MESSAGE_EXPIRED``, the run's next
    calls go to a fresh thread, and the late answer, if it ever comes, is dropped.

    Args:
        app: the ClientApp.
        wake: called from a worker thread when a reply is ready.
        handle: turns (app, message, context) into a reply (errors included).
    """

    def __init__(self, app: ClientApp, wake: Callable[[], None], handle: Handler) -> None:
        self._app = app
        self._wake = wake
        self._handle = handle
        self._threads: dict[int, _RunThread] = {}
        self._calls: list[_Call] = []  # in flight, in the order they came
        self._done: queue.SimpleQueue[tuple[_Call, Message]] = queue.SimpleQueue()

    def pollables(self) -> list[zmq.Socket[bytes] | int]:
        """None: replies arrive through the agent's wake-up."""
        return []

    def submit(
        self, msg: Message, ctx: Context, frames: Sequence[Any], app_dir: Path | None
    ) -> list[Outgoing]:
        """Queue the call on the run's thread."""
        call = _Call(msg, ctx, task_deadline(msg, ctx.run_config, time.monotonic()))
        self._calls.append(call)
        self._thread(ctx.run_id).put(call)
        return []

    def _thread(self, run_id: int) -> _RunThread:
        thread = self._threads.get(run_id)
        if thread is None:
            thread = self._threads[run_id] = _RunThread(run_id, self._call)
        return thread

    def _call(self, call: _Call) -> None:
        """On the run's thread: the reply to ``call``, whatever happens."""
        started = time.perf_counter()
        try:
            reply = self._handle(self._app, call.msg, call.ctx)
        except BaseException as exc:  # the handler itself failed: still answer the task
            code = ErrorCode.CLIENT_APP_RAISED
            reply = failure_reply(call.msg, code, "task_failed", exc)
        self._done.put((call, reply))
        secs = round(time.perf_counter() - started, 4)
        meta = call.msg.metadata
        log.debug("task_done", run_id=meta.run_id, message_type=meta.message_type, secs=secs)
        self._wake()

    def collect(self, ready: set[Any], now: float) -> list[Outgoing]:
        """Encode the replies the threads finished; answer the calls past their deadline."""
        out: list[Outgoing] = []
        while True:
            try:
                call, reply = self._done.get_nowait()
            except queue.Empty:
                break
            if call.abandoned:
                log.info("late_answer_dropped", run_id=call.ctx.run_id, reply_to=_id(call))
                continue
            self._calls.remove(call)
            out.append(_outgoing(call.msg, reply))
        for call in [c for c in self._calls if now >= c.deadline.at]:
            out.extend(self._abandon(call))
        return out

    def _abandon(self, call: _Call) -> list[Outgoing]:
        """Answer ``call`` as late; if it is running, leave its thread to it."""
        call.abandoned = True
        self._calls.remove(call)
        run_id = call.ctx.run_id
        if call.started:
            log.warning(
                "task_deadline_passed", run_id=run_id, message_id=_id(call), limit=call.deadline.why
            )
            thread = self._threads.pop(run_id, None)
            for waiting in thread.close() if thread is not None else []:
                self._thread(run_id).put(waiting)  # the next calls get a fresh thread
        if call.deadline.ttl:
            return []  # the link answered it already
        return [_outgoing(call.msg, call.deadline.error(call.msg))]

    def end_run(self, run_id: int, why: str) -> None:
        """Drop the run's calls (a running one is left to finish, unanswered)."""
        for call in [c for c in self._calls if c.ctx.run_id == run_id]:
            call.abandoned = True
            self._calls.remove(call)
        thread = self._threads.pop(run_id, None)
        if thread is not None:
            thread.close()

    def next_due(self) -> float | None:
        """The earliest deadline of a call in flight."""
        return min((c.deadline.at for c in self._calls), default=None)

    @property
    def in_flight(self) -> int:
        """Calls submitted and not yet answered."""
        return len(self._calls)

    def close(self, timeout: float) -> None:
        """Stop taking work (running calls finish in their threads, unanswered)."""
        for thread in self._threads.values():
            thread.close()
        self._threads.clear()


def _id(call: _Call) -> str:
    return call.msg.metadata.message_id


def _outgoing(msg: Message, reply: Message) -> Outgoing:
    """``reply`` encoded; an error reply if it cannot be (e.g. a dtype the wire lacks)."""
    try:
        frames = encode(reply)
    except Exception as exc:
        reason = f"cannot encode the ClientApp's reply: {type(exc).__name__}: {exc}"[:2000]
        frames = encode(msg.create_error_reply(Error(ErrorCode.CLIENT_APP_RAISED, reason)))
    return Outgoing(msg.metadata.message_id, frames)


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

    def end_run(self, run_id: int, why: str) -> None:
        """Stop the run's worker (killed at once if it is busy)."""
        self._pool.end_run(run_id, why)

    def next_due(self) -> float | None:
        """The earliest deadline of a task at a worker."""
        return self._pool.next_due()

    @property
    def in_flight(self) -> int:
        """Tasks at workers and not yet answered."""
        return self._pool.in_flight

    def close(self, timeout: float) -> None:
        """Stop every worker."""
        self._pool.close(timeout)
