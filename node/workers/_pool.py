"""WorkerPool: one ClientApp worker process per run, driven from the agent's IO thread.

Flower starts a Python process per ClientApp message; fedzero starts one per run,
at the run's first task (or earlier, with :meth:`WorkerPool.start_run`), and keeps
it until the run ends. The worker (:mod:`fedzero.node.workers._worker`) keeps the
run's Context, so ``context.state`` persists across the run's messages. This
module speaks the agent <-> worker protocol (:mod:`._protocol`); the processes'
life (start, exit watch, kill, reap) is :mod:`._processes`.

Threading: the pool owns a ROUTER socket (bound on ``ipc://`` in a private
temporary directory) and, on Linux, an epoll fd that becomes readable when a
worker process exits. Every method must be called from one thread, the agent's
IO thread, which registers :meth:`WorkerPool.pollables` in its poller, calls
:meth:`WorkerPool.on_readable` for each one that is readable and
:meth:`WorkerPool.tick` once per loop turn, and sends the :class:`WorkerReply`
frames those return to the link.

Failures: a worker that dies (``os._exit``, a segfault, SIGKILL, the OOM killer)
fails its in-flight task with ``CLIENT_APP_RAISED`` "ClientApp worker for run N
died (exit code X)"; the run's next task starts a fresh worker with a fresh
Context: **``context.state`` is lost with the process** (the pool does not copy
it back after each reply, as a state with arrays could be as big as the model).
A ClientApp that does not load fails the run's waiting tasks with the reason;
the next task tries again. Tasks of one run are handed to its worker one at a
time, so a crash fails exactly the task that was running; the ones waiting
behind it go to the replacement.

Deadlines: every task has one, its TTL, and a ``task-timeout`` counted from when
its worker gets it (see :func:`fedzero.node._tasks.task_deadline`). A worker
still busy with a task at its deadline is killed and the task answered with
``MESSAGE_EXPIRED`` (unless the TTL set the deadline: the link has answered it
then); the run's next task gets a fresh worker. When a run ends, its worker is
killed at once if it is busy (the answer is of no use any more), or asked to
stop if it is idle.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
import zmq

from fedzero.core import ClosedError, Context, DecodeLimits, Message, encode

from .._tasks import task_deadline
from ._channel import WorkerChannel, WorkerReply
from ._processes import LaunchOptions, Task, WorkerProc, WorkerProcesses, exit_text
from ._runs import RunSlot, late_reply
from ._shm import make_pool_dir

log = structlog.get_logger(__name__)


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
        shared_memory: hand large payloads over in shared-memory segments (see
            :mod:`._shm`); False: every byte crosses the ipc socket.

    Raises:
        ConfigurationError: the private ipc endpoint cannot be bound.
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
        shared_memory: bool = True,
    ) -> None:
        self._own_ctx = zmq_context is None
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq_context or zmq.Context()
        self._channel = WorkerChannel(self._ctx, socket_dir, limits)
        self.endpoint = self._channel.endpoint
        self.shm_dir = make_pool_dir() if shared_memory else None
        launch = LaunchOptions(
            self.endpoint,
            self.shm_dir,
            python,
            env,
            log_level,
            start_timeout,
            stop_grace,
            watchdog_interval,
        )
        self._procs = WorkerProcesses(launch)
        self._runs: dict[int, RunSlot] = {}
        self._closed = False

    # ------------------------------------------------------------------ queries

    def pollables(self) -> list[zmq.Socket[bytes] | int]:
        """The socket and fd to register (POLLIN) in the IO thread's poller; fixed for life."""
        items: list[zmq.Socket[bytes] | int] = [self._channel.socket]
        exits = self._procs.fileno()
        if exits is not None:
            items.append(exits)
        return items

    @property
    def in_flight(self) -> int:
        """Tasks submitted and not yet answered (waiting or running)."""
        return sum(len(r.tasks()) for r in self._runs.values())

    def next_due(self) -> float | None:
        """The earliest deadline of a task waiting or running (monotonic), if any."""
        tasks = [t for r in self._runs.values() for t in r.tasks()]
        return min((t.deadline.at for t in tasks if t.deadline is not None), default=None)

    @property
    def live_pids(self) -> list[int]:
        """Pids of the worker processes not yet reaped (current and stopping ones)."""
        return self._procs.live_pids

    def worker_pid(self, run_id: int) -> int | None:
        """The pid of the run's current worker, if it has one."""
        run = self._runs.get(run_id)
        return run.worker.pid if run is not None and run.worker is not None else None

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
            ClosedError: the pool is closed.
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
            ClosedError: the pool is closed.
        """
        run = self._run(context, app_dir)
        deadline = task_deadline(msg, context.run_config, time.monotonic())
        payload = list(frames) if frames is not None else encode(msg)
        run.queue.append(Task(msg, payload, deadline=deadline))
        return self._pump(run)

    def on_readable(self, item: zmq.Socket[bytes] | int) -> list[WorkerReply]:
        """Handle one of :meth:`pollables` that the poller reported readable."""
        if item is self._channel.socket:
            return self._drain()
        if item == self._procs.fileno():
            replies = self._drain()  # a reply sent just before the exit counts
            for proc in self._procs.exited():
                replies.extend(self._reap(proc))
            return replies
        return []

    def tick(self, now: float | None = None) -> list[WorkerReply]:
        """Reap dead workers, kill those past a deadline, fail late tasks; call once per turn.

        Args:
            now: ``time.monotonic()``, if the caller has it.
        """
        now = time.monotonic() if now is None else now
        replies: list[WorkerReply] = []
        for proc in self._procs.check(now):
            replies.extend(self._drain())
            replies.extend(self._reap(proc))
        for run in list(self._runs.values()):
            replies.extend(self._expire(run, now))
        return replies

    def end_run(self, run_id: int, why: str = "the run ended") -> None:
        """Forget the run: drop its tasks, kill its worker if busy, else ask it to stop.

        Args:
            run_id: the run.
            why: the reason, for the log (e.g. ``"the run ended"``).
        """
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        proc = run.worker
        busy = proc is not None and proc.current is not None
        if run.queue or busy:
            log.info("worker_tasks_dropped", run_id=run_id, waiting=len(run.queue), running=busy)
        if proc is not None:
            self._retire(proc, why)
            if busy:  # its answer is of no use any more: do not wait for it
                self._procs.kill(proc, why)

    def close(self, timeout: float = 5.0) -> None:
        """Stop every worker (killing those still running after ``timeout``) and clean up."""
        if self._closed:
            return
        self._closed = True
        for run_id in list(self._runs):
            self.end_run(run_id, "the pool closed")
        self._procs.close(timeout)
        self._channel.close()
        if self.shm_dir is not None:
            shutil.rmtree(self.shm_dir, ignore_errors=True)
        if self._own_ctx:
            self._ctx.term()

    # ------------------------------------------------------- tasks to workers

    def _run(self, context: Context, app_dir: str | Path) -> RunSlot:
        if self._closed:
            raise ClosedError("the WorkerPool is closed")
        run = self._runs.get(context.run_id)
        if run is None:
            run = self._runs[context.run_id] = RunSlot(context, Path(app_dir))
        else:
            run.context, run.app_dir = context, Path(app_dir)
        return run

    def _pump(self, run: RunSlot) -> list[WorkerReply]:
        """Start the run's worker if needed; hand it the next task if it is idle."""
        if run.worker is None:
            try:
                run.worker = self._procs.spawn(run.context.run_id)
            except OSError as exc:
                log.error("worker_start_failed", run_id=run.context.run_id, error=str(exc))
                return self._fail_queue(run, f"cannot start a ClientApp worker: {exc}")
        proc = run.worker
        while run.queue and run.queue[0].message.metadata.is_expired():
            meta = run.queue.popleft().message.metadata  # the link has failed it already
            log.warning(
                "task_dropped", run_id=meta.run_id, message_id=meta.message_id, expired=True
            )
        if not proc.ready or proc.current is not None or not run.queue:
            return []
        task = run.queue.popleft()
        try:
            self._channel.send_task(proc, task, run.context)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: it went away; the reaper replaces it
            run.queue.appendleft(task)
            self._procs.kill(proc, f"it is unreachable ({exc})")
            return []
        task.sent_at = time.perf_counter()
        if task.deadline is not None:  # the timeout counts from now: the app has it
            task.deadline = task.deadline.started(time.monotonic())
        proc.current = task
        return []

    # ---------------------------------------------------- messages from workers

    def _drain(self) -> list[WorkerReply]:
        replies: list[WorkerReply] = []
        self._channel.receive(lambda *message: replies.extend(self._contained(*message)))
        return replies

    def _contained(
        self, identity: bytes, header: dict[str, Any], payload: list[zmq.Frame]
    ) -> list[WorkerReply]:
        """:meth:`_on_message`, contained: a failure there never reaches the IO thread.

        It fails the worker and its run's tasks, as a ``fatal`` from the worker would.
        """
        try:
            return self._on_message(identity, header, payload)
        except Exception as exc:
            log.exception("worker_message_failed", identity=identity[:40], error=repr(exc))
            proc = self._procs.get(identity)
            if proc is None:
                return []
            reason = f"the node could not handle its message: {exc!r}"[:2000]
            replies = self._on_fatal(proc, self._runs.get(proc.run_id), reason)
            self._procs.kill(proc, reason)
            return replies

    def _on_message(
        self, identity: bytes, header: dict[str, Any], payload: list[zmq.Frame]
    ) -> list[WorkerReply]:
        proc = self._procs.get(identity)
        if proc is None or not header:
            log.warning("worker_message_dropped", identity=identity[:40])
            return []
        run = self._runs.get(proc.run_id)
        op = header["op"]
        if op == "hello":
            return self._on_hello(proc, run, header)
        if op == "reply":
            return self._on_reply(proc, run, header, payload)
        return self._on_fatal(proc, run, str(header.get("reason", f"unknown op {op!r:.40}")))

    def _on_hello(
        self, proc: WorkerProc, run: RunSlot | None, header: dict[str, Any]
    ) -> list[WorkerReply]:
        if header.get("pid") != proc.pid or proc.ready:
            self._procs.kill(proc, f"its hello does not match ({header!r:.80})")
            return []
        proc.ready = True
        if proc.retired or run is None:
            self._channel.stop(proc)
            return []
        self._channel.init(proc, run.context, run.app_dir)
        return self._pump(run)

    def _on_fatal(self, proc: WorkerProc, run: RunSlot | None, reason: str) -> list[WorkerReply]:
        log.error("worker_fatal", run_id=proc.run_id, pid=proc.pid, reason=reason)
        proc.why = reason
        replies = self._fail_current(proc, f"ClientApp worker for run {proc.run_id} failed: ")
        if run is not None and run.worker is proc:
            replies += self._fail_queue(run, f"ClientApp worker failed: {reason}")
        self._retire(proc, reason)
        return replies

    def _on_reply(
        self,
        proc: WorkerProc,
        run: RunSlot | None,
        header: dict[str, Any],
        payload: list[zmq.Frame],
    ) -> list[WorkerReply]:
        task, proc.current = proc.current, None
        if task is None or proc.retired or run is None:
            log.info("worker_reply_dropped", run_id=proc.run_id, reason="no task is waiting")
            return []
        done = self._channel.reply(proc, task, header, list(payload))
        meta = task.message.metadata
        secs = round(time.perf_counter() - task.sent_at, 4)
        log.debug("worker_task_done", run_id=meta.run_id, message_type=meta.message_type, secs=secs)
        return [done, *self._pump(run)]

    # ------------------------------------------------------------- failures

    def _fail_current(self, proc: WorkerProc, prefix: str) -> list[WorkerReply]:
        task, proc.current = proc.current, None
        if task is None or proc.retired:
            return []
        return [WorkerReply.error(task, (prefix + proc.why)[:2000])]

    def _fail_queue(self, run: RunSlot, reason: str) -> list[WorkerReply]:
        replies = []
        while run.queue:
            replies.append(WorkerReply.error(run.queue.popleft(), reason))
        return replies

    def _reap(self, proc: WorkerProc) -> list[WorkerReply]:
        died = f"ClientApp worker for run {proc.run_id} died ({exit_text(self._procs.reap(proc))})"
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

    def _expire(self, run: RunSlot, now: float) -> list[WorkerReply]:
        """Fail the run's tasks past their deadline; kill its worker if it is busy with one."""
        replies = [reply for task in run.pop_late(now) for reply in late_reply(task)]
        proc, task = run.worker, run.overdue(now)
        if proc is None or task is None or task.deadline is None:
            return replies
        reason = f"its task passed {task.deadline.why}"
        meta = task.message.metadata
        log.warning(
            "task_deadline_passed",
            run_id=meta.run_id,
            message_id=meta.message_id,
            limit=task.deadline.why,
            pid=proc.pid,
        )
        proc.current = None
        self._retire(proc, reason)
        self._procs.kill(proc, reason)
        replies.extend(late_reply(task))
        if run.queue:  # the next task gets a fresh worker
            replies.extend(self._pump(run))
        return replies

    def _retire(self, proc: WorkerProc, why: str) -> None:
        """Detach ``proc`` from its run and ask it to stop; kill it after the grace."""
        run = self._runs.get(proc.run_id)
        if run is not None and run.worker is proc:
            run.worker = None
        self._procs.retire(proc, why)
        if proc.ready:  # else it gets "stop" in answer to its hello
            self._channel.stop(proc)
