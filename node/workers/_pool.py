"""WorkerPool: one ClientApp worker process per run, driven from the agent's IO thread.

Flower starts a Python process per ClientApp message; fedzero starts one per run,
at the run's first task (or earlier, with :meth:`WorkerPool.start_run`), and keeps
it until the run ends. The worker (:mod:`fedzero.node.workers._worker`, whose module
docstring documents the agent <-> worker protocol) keeps the run's Context, so
``context.state`` persists across the run's messages.

Threading: the pool owns a ROUTER socket (bound on ``ipc://`` in a private
temporary directory) and, on Linux, an epoll fd that becomes readable when a
worker process exits (one ``pidfd`` per worker). Every method must be called
from one thread, the agent's IO thread, which registers :meth:`WorkerPool.pollables`
in its poller, calls :meth:`WorkerPool.on_readable` for each one that is
readable and :meth:`WorkerPool.tick` once per loop turn, and sends the
:class:`WorkerReply` frames those return to the link.

Failures: a worker that dies (``os._exit``, a segfault, SIGKILL, the OOM killer)
fails its in-flight task with ``CLIENT_APP_RAISED`` "ClientApp worker for run N
died (exit code X)"; the run's next task starts a fresh worker with a fresh
Context: **``context.state`` is lost with the process** (the pool does not copy
it back after each reply, as a state with arrays could be as big as the model).
A ClientApp that does not load fails the run's waiting tasks with the reason;
the next task tries again. Tasks of one run are handed to its worker one at a
time, so a crash fails exactly the task that was running; the ones waiting
behind it go to the replacement.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import structlog
import zmq

from fedzero.core import (
    Context,
    DecodeLimits,
    DeserializationError,
    Error,
    ErrorCode,
    Message,
    UserConfig,
    decode,
    encode,
)

from ._worker import control_frame, parse_control

log = structlog.get_logger(__name__)

_HAS_PIDFD: Final = hasattr(os, "pidfd_open") and hasattr(select, "epoll")


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerReply:
    """A reply to send to the link: the decoded message and the frames to forward.

    Attributes:
        message: the reply, decoded (its arrays are views of ``frames``).
        frames: the encoded reply; send them with ``copy=False``.
    """

    message: Message
    frames: list[Any]

    @property
    def reply_to(self) -> str:
        """The id of the task this reply answers."""
        return self.message.metadata.reply_to_message_id

    @property
    def nbytes(self) -> int:
        """Total size of the frames (for the link's upload credit)."""
        return sum(len(f) for f in self.frames)


@dataclasses.dataclass(slots=True)
class _Task:
    message: Message
    frames: list[Any]
    sent_at: float = 0.0


@dataclasses.dataclass(slots=True)
class _Proc:
    run_id: int
    identity: bytes
    proc: subprocess.Popen[bytes]
    pidfd: int | None
    start_deadline: float
    ready: bool = False
    current: _Task | None = None
    synced: tuple[int, UserConfig] | None = None
    retired: bool = False
    kill_at: float | None = None
    why: str = ""


@dataclasses.dataclass(slots=True)
class _Run:
    context: Context
    app_dir: Path
    queue: collections.deque[_Task] = dataclasses.field(default_factory=collections.deque)
    worker: _Proc | None = None
    generation: int = 0


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"exit code {code}, {signal.Signals(-code).name}"
    return f"exit code {code}"


class WorkerPool:
    """Per-run ClientApp worker processes, owned by one thread (see the module doc).

    Args:
        zmq_context: the context to make the ROUTER in (default: a private one).
        socket_dir: where to make the private ipc directory (default: the temp dir).
        python: the interpreter that runs the workers.
        env: the workers' environment (default: inherited).
        log_level: the workers' log level (default: ``$FEDZERO_LOG_LEVEL`` or info).
        start_timeout: seconds a new worker may take to connect before it is killed.
        stop_grace: seconds a stopped worker may take to finish before it is killed.
        watchdog_interval: how often a worker checks that the agent is still alive.
        limits: decode limits for the workers' replies.
    """

    def __init__(
        self,
        *,
        zmq_context: zmq.Context[zmq.Socket[bytes]] | None = None,
        socket_dir: str | Path | None = None,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        log_level: str | None = None,
        start_timeout: float = 60.0,
        stop_grace: float = 5.0,
        watchdog_interval: float = 1.0,
        limits: DecodeLimits | None = None,
    ) -> None:
        self._own_ctx = zmq_context is None
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq_context or zmq.Context()
        self._dir = Path(tempfile.mkdtemp(prefix="fzw-", dir=socket_dir))
        self.endpoint = f"ipc://{self._dir}/workers"
        self._python = python
        self._env = dict(env) if env is not None else None
        self._log_level = log_level
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self._watchdog = watchdog_interval
        self._limits = limits
        self._router = self._ctx.socket(zmq.ROUTER)
        for option, value in (
            (zmq.LINGER, 0),
            (zmq.ROUTER_MANDATORY, 1),  # an unreachable worker is an error, not a silent drop
            (zmq.SNDHWM, 0),
            (zmq.RCVHWM, 0),
        ):
            self._router.setsockopt(option, value)
        try:
            self._router.bind(self.endpoint)
        except zmq.ZMQError:
            self._router.close(linger=0)
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self._epoll = select.epoll() if _HAS_PIDFD else None
        self._runs: dict[int, _Run] = {}
        self._procs: dict[bytes, _Proc] = {}
        self._by_pidfd: dict[int, _Proc] = {}
        self._closed = False

    # ------------------------------------------------------------------ queries

    def pollables(self) -> list[zmq.Socket[bytes] | int]:
        """The socket and fd to register (POLLIN) in the IO thread's poller; fixed for life."""
        items: list[zmq.Socket[bytes] | int] = [self._router]
        if self._epoll is not None:
            items.append(self._epoll.fileno())
        return items

    @property
    def in_flight(self) -> int:
        """Tasks submitted and not yet answered (waiting or running)."""
        busy = sum(
            r.worker is not None and r.worker.current is not None for r in self._runs.values()
        )
        return busy + sum(len(r.queue) for r in self._runs.values())

    @property
    def live_pids(self) -> list[int]:
        """Pids of the worker processes not yet reaped (current and stopping ones)."""
        return [proc.proc.pid for proc in self._procs.values()]

    def worker_pid(self, run_id: int) -> int | None:
        """The pid of the run's current worker, if it has one."""
        run = self._runs.get(run_id)
        return run.worker.proc.pid if run is not None and run.worker is not None else None

    # ------------------------------------------------------------------ driving

    def start_run(self, context: Context, app_dir: str | Path) -> list[WorkerReply]:
        """Start the run's worker now (idempotent), so its first task does not wait.

        Args:
            context: the agent's Context of the run; the pool reads its ids and
                configs when it (re)starts a worker and before each task, and sends
                changes of ``node_id``/``run_config`` to the worker.
            app_dir: the app project folder whose ClientApp the worker loads.

        Returns:
            Error replies for tasks that failed at once (a worker that cannot start).

        Raises:
            RuntimeError: the pool is closed.
        """
        run = self._run(context, app_dir)
        return self._pump(run)

    def submit(
        self,
        msg: Message,
        context: Context,
        app_dir: str | Path,
        frames: Sequence[Any] | None = None,
    ) -> list[WorkerReply]:
        """Queue ``msg`` for the run's worker, starting the worker if there is none.

        Args:
            msg: the decoded task (kept to build an error reply if the worker dies).
            context: the agent's Context of the run (see :meth:`start_run`).
            app_dir: the app project folder whose ClientApp the worker loads.
            frames: the frames ``msg`` was decoded from, forwarded as they are
                (zero-copy); default: ``encode(msg)``.

        Returns:
            Error replies for tasks that failed at once (a worker that cannot start).

        Raises:
            RuntimeError: the pool is closed.
        """
        run = self._run(context, app_dir)
        run.queue.append(_Task(msg, list(frames) if frames is not None else encode(msg)))
        return self._pump(run)

    def on_readable(self, item: zmq.Socket[bytes] | int) -> list[WorkerReply]:
        """Handle one of :meth:`pollables` that the poller reported readable."""
        if item is self._router:
            return self._drain()
        if self._epoll is not None and item == self._epoll.fileno():
            replies = self._drain()  # a reply sent just before the exit counts
            for fd, _ in self._epoll.poll(0):
                proc = self._by_pidfd.get(fd)
                if proc is not None and proc.proc.poll() is not None:
                    replies.extend(self._reap(proc))
            return replies
        return []

    def tick(self, now: float | None = None) -> list[WorkerReply]:
        """Reap dead workers and kill those past a deadline; call once per loop turn.

        Args:
            now: ``time.monotonic()``, if the caller has it.
        """
        now = time.monotonic() if now is None else now
        replies: list[WorkerReply] = []
        for proc in list(self._procs.values()):
            if proc.proc.poll() is not None:
                replies.extend(self._drain())
                replies.extend(self._reap(proc))
            elif not proc.ready and now >= proc.start_deadline:
                self._kill(proc, f"it did not connect within {self._start_timeout} s")
            elif proc.kill_at is not None and now >= proc.kill_at:
                self._kill(proc, f"it did not stop within {self._stop_grace} s")
        return replies

    def end_run(self, run_id: int) -> None:
        """Forget the run: drop its waiting tasks and stop its worker (killed after the grace)."""
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        if run.queue or (run.worker is not None and run.worker.current is not None):
            log.info("worker_tasks_dropped", run_id=run_id, waiting=len(run.queue))
        if run.worker is not None:
            self._retire(run.worker, "the run ended")

    def close(self, timeout: float = 5.0) -> None:
        """Stop every worker (killing those still running after ``timeout``) and clean up."""
        if self._closed:
            return
        self._closed = True
        for run_id in list(self._runs):
            self.end_run(run_id)
        for proc in self._procs.values():
            if not proc.ready:  # still starting: nobody will read its hello any more
                self._kill(proc, "the pool closed")
        deadline = time.monotonic() + timeout
        for proc in list(self._procs.values()):
            try:
                proc.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill(proc, "the pool closed")
                proc.proc.wait()
            self._forget(proc)
        if self._epoll is not None:
            self._epoll.close()
        self._router.close(linger=0)
        if self._own_ctx:
            self._ctx.term()
        shutil.rmtree(self._dir, ignore_errors=True)

    # ---------------------------------------------------------------- internals

    def _run(self, context: Context, app_dir: str | Path) -> _Run:
        if self._closed:
            raise RuntimeError("the WorkerPool is closed")
        run = self._runs.get(context.run_id)
        if run is None:
            run = self._runs[context.run_id] = _Run(context, Path(app_dir))
        else:
            run.context, run.app_dir = context, Path(app_dir)
        return run

    def _pump(self, run: _Run) -> list[WorkerReply]:
        """Start the run's worker if needed; hand it the next task if it is idle."""
        if run.worker is None:
            try:
                run.worker = self._spawn(run)
            except OSError as exc:
                log.error("worker_start_failed", run_id=run.context.run_id, error=str(exc))
                return self._fail_queue(run, f"cannot start a ClientApp worker: {exc}")
        proc = run.worker
        while run.queue and run.queue[0].message.metadata.is_expired():
            meta = run.queue.popleft().message.metadata  # the link has failed it already
            log.warning("task_dropped", run_id=meta.run_id, message_id=meta.message_id,
                        expired=True)  # fmt: skip
        if not proc.ready or proc.current is not None or not run.queue:
            return []
        task = run.queue.popleft()
        ctx = run.context
        try:
            if proc.synced != (ctx.node_id, ctx.run_config):
                update = control_frame("update", node_id=ctx.node_id, run_config=ctx.run_config)
                self._router.send_multipart([proc.identity, update])
                proc.synced = (ctx.node_id, dict(ctx.run_config))
            self._router.send_multipart(
                [proc.identity, control_frame("task"), *task.frames], copy=False
            )
        except zmq.ZMQError as exc:  # EHOSTUNREACH: it went away; the reaper replaces it
            run.queue.appendleft(task)
            self._kill(proc, f"it is unreachable ({exc})")
            return []
        task.sent_at = time.perf_counter()
        proc.current = task
        return []

    def _spawn(self, run: _Run) -> _Proc:
        run.generation += 1
        run_id = run.context.run_id
        identity = f"run-{run_id}-{run.generation}"
        cmd = [self._python, "-m", "fedzero.node.workers._worker", "--endpoint", self.endpoint,
               "--identity", identity, "--parent-pid", str(os.getpid()),
               "--watchdog-interval", str(self._watchdog)]  # fmt: skip
        if self._log_level is not None:
            cmd += ["--log-level", self._log_level]
        popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=self._env)  # noqa: S603
        pidfd = None
        if self._epoll is not None:
            try:
                pidfd = os.pidfd_open(popen.pid)
                self._epoll.register(pidfd, select.EPOLLIN)
            except OSError:
                if pidfd is not None:
                    os.close(pidfd)
                popen.kill()
                popen.wait()
                raise
        proc = _Proc(run_id, identity.encode(), popen, pidfd,
                     time.monotonic() + self._start_timeout)  # fmt: skip
        self._procs[proc.identity] = proc
        if pidfd is not None:
            self._by_pidfd[pidfd] = proc
        log.info("worker_started", run_id=run_id, pid=popen.pid, identity=identity)
        return proc

    def _drain(self) -> list[WorkerReply]:
        replies: list[WorkerReply] = []
        while True:
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return replies
            proc = self._procs.get(frames[0].bytes)
            if proc is None or len(frames) < 2:
                log.warning("worker_message_dropped", identity=frames[0].bytes[:40])
                continue
            try:
                header = parse_control(frames[1])
            except ValueError as exc:
                header = {"op": "fatal", "reason": f"bad control frame: {exc}"}
            replies.extend(self._on_worker(proc, header, frames[2:]))

    def _on_worker(
        self, proc: _Proc, header: dict[str, Any], payload: list[zmq.Frame]
    ) -> list[WorkerReply]:
        op = header["op"]
        run = self._runs.get(proc.run_id)
        if op == "hello":
            if header.get("pid") != proc.proc.pid or proc.ready:
                self._kill(proc, f"its hello does not match ({header!r:.80})")
                return []
            proc.ready = True
            if proc.retired or run is None:
                self._router.send_multipart([proc.identity, control_frame("stop")])
                return []
            ctx = run.context
            init = control_frame("init", run_id=ctx.run_id, node_id=ctx.node_id,
                                 node_config=ctx.node_config, run_config=ctx.run_config,
                                 app_dir=str(run.app_dir))  # fmt: skip
            self._router.send_multipart([proc.identity, init])
            proc.synced = (ctx.node_id, dict(ctx.run_config))
            return self._pump(run)
        if op == "reply":
            return self._on_reply(proc, run, payload)
        reason = str(header.get("reason", f"unknown op {op!r:.40}"))
        log.error("worker_fatal", run_id=proc.run_id, pid=proc.proc.pid, reason=reason)
        proc.why = reason
        replies = self._fail_current(proc, f"ClientApp worker for run {proc.run_id} failed: ")
        if run is not None and run.worker is proc:
            replies += self._fail_queue(run, f"ClientApp worker failed: {reason}")
        self._retire(proc, reason)
        return replies

    def _on_reply(
        self, proc: _Proc, run: _Run | None, payload: list[zmq.Frame]
    ) -> list[WorkerReply]:
        task, proc.current = proc.current, None
        if task is None or proc.retired or run is None:
            log.info("worker_reply_dropped", run_id=proc.run_id, reason="no task is waiting")
            return []
        meta = task.message.metadata
        try:
            reply = decode(payload, limits=self._limits)
            if reply.metadata.reply_to_message_id != meta.message_id:
                raise DeserializationError("the reply answers another message")
            frames: list[Any] = payload
        except DeserializationError as exc:
            reason = f"ClientApp worker for run {meta.run_id} sent a bad reply: {exc}"
            reply = task.message.create_error_reply(Error(ErrorCode.CLIENT_APP_RAISED, reason))
            frames = encode(reply)
        log.debug("worker_task_done", run_id=meta.run_id, message_type=meta.message_type,
                  secs=round(time.perf_counter() - task.sent_at, 4))  # fmt: skip
        return [WorkerReply(reply, frames), *self._pump(run)]

    def _fail_current(self, proc: _Proc, prefix: str) -> list[WorkerReply]:
        task, proc.current = proc.current, None
        if task is None or proc.retired:
            return []
        reply = task.message.create_error_reply(
            Error(ErrorCode.CLIENT_APP_RAISED, (prefix + proc.why)[:2000])
        )
        return [WorkerReply(reply, encode(reply))]

    def _fail_queue(self, run: _Run, reason: str) -> list[WorkerReply]:
        replies = []
        while run.queue:
            task = run.queue.popleft()
            reply = task.message.create_error_reply(Error(ErrorCode.CLIENT_APP_RAISED, reason))
            replies.append(WorkerReply(reply, encode(reply)))
        return replies

    def _reap(self, proc: _Proc) -> list[WorkerReply]:
        code = proc.proc.wait()
        self._forget(proc)
        emit = log.info if proc.retired or code == 0 else log.error
        emit("worker_exited", run_id=proc.run_id, pid=proc.proc.pid, exit=_exit_text(code),
             reason=proc.why or None)  # fmt: skip
        died = f"ClientApp worker for run {proc.run_id} died ({_exit_text(code)})"
        proc.why = f"{died}: {proc.why}" if proc.why else died
        replies = self._fail_current(proc, "")
        run = self._runs.get(proc.run_id)
        if run is not None and run.worker is proc:
            run.worker = None
            if not proc.ready:  # it never started: a replacement would most likely fail too
                replies += self._fail_queue(run, proc.why)
            elif run.queue:  # the next task starts a replacement (with a fresh Context)
                replies += self._pump(run)
        return replies

    def _retire(self, proc: _Proc, why: str) -> None:
        """Detach ``proc`` from its run and ask it to stop; kill it after the grace."""
        run = self._runs.get(proc.run_id)
        if run is not None and run.worker is proc:
            run.worker = None
        proc.retired, proc.current = True, None
        proc.why = proc.why or why
        proc.kill_at = time.monotonic() + self._stop_grace
        if not proc.ready:
            return  # it gets "stop" in answer to its hello
        with contextlib.suppress(zmq.ZMQError):
            self._router.send_multipart([proc.identity, control_frame("stop")])

    def _kill(self, proc: _Proc, why: str) -> None:
        if proc.proc.poll() is None:
            log.warning("worker_killed", run_id=proc.run_id, pid=proc.proc.pid, reason=why)
            proc.why = proc.why or why
            proc.proc.kill()
        proc.kill_at = None

    def _forget(self, proc: _Proc) -> None:
        self._procs.pop(proc.identity, None)
        if proc.pidfd is not None:
            self._by_pidfd.pop(proc.pidfd, None)
            if self._epoll is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(proc.pidfd)
            os.close(proc.pidfd)
            proc.pidfd = None
