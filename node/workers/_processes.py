"""The pool's worker processes: start, watch for their exit, kill, reap.

On Linux each worker gets a ``pidfd`` registered in one epoll fd, which becomes
readable the moment a worker exits (``os._exit``, a segfault, SIGKILL, the OOM
killer), so the IO thread's poller wakes at once; elsewhere the pool's ``tick``
notices exits on its next turn. A worker that does not connect within the start
timeout, or does not stop within the grace after being asked to, is killed.
Every method is called from the agent's IO thread (see :mod:`._pool`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import structlog

from fedzero.core import Message, UserConfig

from .._tasks import Deadline
from ._shm import SegmentEnds

log = structlog.get_logger(__name__)

_HAS_PIDFD: Final = hasattr(os, "pidfd_open") and hasattr(select, "epoll")

WORKER_MODULE: Final = "fedzero.node.workers._worker"
"""What the workers run, as ``python -m WORKER_MODULE``."""


@dataclasses.dataclass(slots=True)
class Task:
    """A task for a worker: the decoded message and the frames to forward."""

    message: Message
    frames: list[Any]
    sent_at: float = 0.0
    deadline: Deadline | None = None


@dataclasses.dataclass(slots=True)
class WorkerProc:
    """One worker process, and where it stands in its life and in the protocol."""

    run_id: int
    identity: bytes
    popen: subprocess.Popen[bytes]
    pidfd: int | None
    start_deadline: float
    ready: bool = False
    current: Task | None = None
    synced: tuple[int, UserConfig] | None = None
    retired: bool = False
    kill_at: float | None = None
    why: str = ""
    shm: SegmentEnds | None = None

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.popen.pid


def exit_text(code: int) -> str:
    """An exit status for people: ``exit code -9, SIGKILL``."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"exit code {code}, {signal.Signals(-code).name}"
    return f"exit code {code}"


@dataclasses.dataclass(frozen=True, slots=True)
class LaunchOptions:
    """How workers are started and how long they are given.

    ``endpoint`` is the pool's ipc:// ROUTER, where workers connect; ``shm_dir``
    the pool's shared-memory directory (None: payloads inline); the other fields
    are the :class:`~fedzero.node.workers.WorkerPool` arguments of the same names.
    """

    endpoint: str
    shm_dir: Path | None
    python: str
    env: Mapping[str, str] | None
    log_level: str | None
    start_timeout: float
    stop_grace: float
    watchdog_interval: float

    def command(self, identity: str, shm_dir: Path | None = None) -> list[str]:
        """The command line of the worker with routing id ``identity``."""
        cmd = [self.python, "-m", WORKER_MODULE, "--endpoint", self.endpoint]
        cmd += ["--identity", identity, "--parent-pid", str(os.getpid())]
        cmd += ["--watchdog-interval", str(self.watchdog_interval)]
        if shm_dir is not None:
            cmd += ["--shm-dir", str(shm_dir)]
        if self.log_level is not None:
            cmd += ["--log-level", self.log_level]
        return cmd


class WorkerProcesses:
    """The live worker processes, by routing identity.

    Args:
        options: how to start workers and the deadlines they get.
    """

    def __init__(self, options: LaunchOptions) -> None:
        self._options = options
        self._env = dict(options.env) if options.env is not None else None
        self._epoll = select.epoll() if _HAS_PIDFD else None
        self._procs: dict[bytes, WorkerProc] = {}
        # Pool-wide, never reused: a run that ends and comes back (a reconnect ends
        # every run) must not get the routing id or segment folder of its previous
        # worker, which may not be reaped yet.
        self._serial = itertools.count(1)
        self._by_pidfd: dict[int, WorkerProc] = {}

    def fileno(self) -> int | None:
        """The fd that becomes readable when a worker exits (None: not on this OS)."""
        return None if self._epoll is None else self._epoll.fileno()

    def get(self, identity: bytes) -> WorkerProc | None:
        """The worker with that routing identity, if it is alive (not reaped yet)."""
        return self._procs.get(identity)

    @property
    def live_pids(self) -> list[int]:
        """Pids of the worker processes not yet reaped."""
        return [proc.pid for proc in self._procs.values()]

    def spawn(self, run_id: int) -> WorkerProc:
        """Start a worker for the run; it connects and says hello on its own.

        Raises:
            OSError: the process (or its pidfd) could not be made.
        """
        identity = f"run-{run_id}-{next(self._serial)}"
        shm = None
        if self._options.shm_dir is not None:  # its segments' directory, removed at reaping
            (self._options.shm_dir / identity).mkdir(mode=0o700)
            shm = SegmentEnds.of(self._options.shm_dir / identity, agent=True)
        cmd = self._options.command(identity, shm.directory if shm is not None else None)
        try:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=self._env)  # noqa: S603
        except OSError:
            if shm is not None:
                shm.close(remove=True)
            raise
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
                if shm is not None:
                    shm.close(remove=True)
                raise
        deadline = time.monotonic() + self._options.start_timeout
        proc = WorkerProc(run_id, identity.encode(), popen, pidfd, deadline, shm=shm)
        self._procs[proc.identity] = proc
        if pidfd is not None:
            self._by_pidfd[pidfd] = proc
        log.info("worker_started", run_id=run_id, pid=popen.pid, identity=identity)
        return proc

    def exited(self) -> list[WorkerProc]:
        """Workers whose pidfd says they exited (call when :meth:`fileno` is readable)."""
        if self._epoll is None:
            return []
        found = (self._by_pidfd.get(fd) for fd, _ in self._epoll.poll(0))
        return [proc for proc in found if proc is not None and proc.popen.poll() is not None]

    def check(self, now: float) -> list[WorkerProc]:
        """Kill the workers past a deadline; return those that exited."""
        exited: list[WorkerProc] = []
        for proc in list(self._procs.values()):
            if proc.popen.poll() is not None:
                exited.append(proc)
            elif not proc.ready and now >= proc.start_deadline:
                self.kill(proc, f"it did not connect within {self._options.start_timeout} s")
            elif proc.kill_at is not None and now >= proc.kill_at:
                self.kill(proc, f"it did not stop within {self._options.stop_grace} s")
        return exited

    def retire(self, proc: WorkerProc, why: str) -> None:
        """Mark ``proc`` as stopping: it is killed if it is still running after the grace."""
        proc.retired, proc.current = True, None
        proc.why = proc.why or why
        proc.kill_at = time.monotonic() + self._options.stop_grace

    def kill(self, proc: WorkerProc, why: str) -> None:
        """SIGKILL ``proc`` (if it still runs), saying why; the reaper fails its task."""
        if proc.popen.poll() is None:
            log.warning("worker_killed", run_id=proc.run_id, pid=proc.pid, reason=why)
            proc.why = proc.why or why
            proc.popen.kill()
        proc.kill_at = None

    def reap(self, proc: WorkerProc) -> int:
        """Wait for ``proc``, forget it, log its exit; return its exit code."""
        code = proc.popen.wait()
        self._forget(proc)
        emit = log.info if proc.retired or code == 0 else log.error
        reason = proc.why or None
        emit("worker_exited", run_id=proc.run_id, pid=proc.pid, exit=exit_text(code), reason=reason)
        return code

    def close(self, timeout: float) -> None:
        """Wait up to ``timeout`` for every worker to exit, killing the late ones."""
        for proc in self._procs.values():
            if not proc.ready:  # still starting: nobody will read its hello any more
                self.kill(proc, "the pool closed")
        deadline = time.monotonic() + timeout
        for proc in list(self._procs.values()):
            try:
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(proc, "the pool closed")
                proc.popen.wait()
            self._forget(proc)
        if self._epoll is not None:
            self._epoll.close()

    def _forget(self, proc: WorkerProc) -> None:
        self._procs.pop(proc.identity, None)
        if proc.shm is not None:  # whatever ended the worker, its segments go with it
            proc.shm.close(remove=True)
            proc.shm = None
        if proc.pidfd is not None:
            self._by_pidfd.pop(proc.pidfd, None)
            if self._epoll is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(proc.pidfd)
            os.close(proc.pidfd)
            proc.pidfd = None
