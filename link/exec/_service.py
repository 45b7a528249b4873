"""The exec service: starts, supervises and stops each submitted run's ServerApp process.

It runs on its own thread: installing a bundle (verify + extract), spawning the
process and reading its output never touch the link's IO thread. Output lines
become the run's log (events of kind ``log`` in the store); exits are reported
to the IO thread through a queue and a notification. Jobs reach the thread the
same way: a queue and a :class:`~fedzero.core.runtime.WakePipe` its selector
watches.
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import structlog

from fedzero.core.bundles import BundleCache, BundleError
from fedzero.core.runtime import WakePipe
from fedzero.core.wire import RUN_SECRET_ENV

from .._state import run_secret
from ..store import StoreWriter

log = structlog.get_logger(__name__)

_SERVER_APP_MODULE: Final = "fedzero.link.exec._serverapp"  # keep: ``python -m`` target
_TAIL: Final = 200  # output lines kept per run for the traceback of a failure
MAX_LINE: Final = 64 * 1024
"""Longest output line kept as one log line; a longer run without a newline is cut
into pieces of this size (the link's memory per ServerApp stays bounded)."""
ERROR_MARK: Final = "FEDZERO-ERROR: "
"""Prefix of the line a ServerApp process prints last when it fails (see ``_serverapp``)."""


class _Child:
    def __init__(self, run_id: int, proc: subprocess.Popen[bytes]) -> None:
        self.run_id = run_id
        self.proc = proc
        self.buffer = b""
        self.tail: list[str] = []
        self.kill_at: float | None = None


class ExecService:
    """Starts each run's ServerApp from its bundle and watches it until it exits.

    Args:
        state_dir: bundles are kept under ``state_dir/bundles`` and extracted
            under ``state_dir/apps`` (content-addressed by hash).
        app_endpoint: the link's app endpoint the ServerApps connect to.
        store: where output lines are recorded as the run's log.
        notify: called from this service's thread after it queues an outcome
            on :attr:`done` (it wakes the link's IO thread).
    """

    def __init__(
        self, state_dir: Path, app_endpoint: str, store: StoreWriter, notify: Callable[[], None]
    ) -> None:
        self.bundles = state_dir / "bundles"
        self.cache = BundleCache(state_dir / "apps")
        self.app_endpoint = app_endpoint
        self.store = store
        self.done: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._notify = notify
        self._jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake = WakePipe()
        self._children: dict[int, _Child] = {}
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="fedzero-exec", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the service's thread runs (False once closed, or if it died)."""
        return self._thread.is_alive()

    def start(self, run_id: int, bundle: bytes, bundle_hash: str) -> None:
        """Install ``bundle`` and start its ServerApp for ``run_id``."""
        self._submit(("start", run_id, bundle, bundle_hash))

    def stop(self, run_id: int, grace: float = 5.0) -> None:
        """SIGTERM the run's ServerApp; SIGKILL it after ``grace`` seconds."""
        self._submit(("stop", run_id, grace))

    def read_bundle(self, peer: bytes, bundle_hash: str) -> None:
        """Read a stored bundle for a node; the answer comes back on :attr:`done`."""
        self._submit(("read", peer, bundle_hash))

    def bundle_path(self, bundle_hash: str) -> Path:
        """Where a submitted bundle is kept (nodes fetch it from there)."""
        return self.bundles / f"{bundle_hash}.fzb"

    def close(self, grace: float = 5.0) -> None:
        """Stop every ServerApp (SIGTERM, then SIGKILL after ``grace``) and the thread."""
        self._submit(("close", grace))
        self._thread.join(grace + 5.0)
        self._wake.close()

    def _submit(self, job: tuple[Any, ...]) -> None:
        self._jobs.put(job)
        self._wake.wake()

    # ------------------------------------------------------------- the thread

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake, selectors.EVENT_READ, None)
        try:
            while not (self._closing and not self._children):
                for key, _ in selector.select(self._timeout()):
                    if key.data is None:
                        self._wake.clear()
                        self._jobs_ready(selector)
                    else:
                        self._read(selector, key.data)
                self._kill_overdue()
        finally:
            selector.close()

    def _timeout(self) -> float | None:
        deadlines = [c.kill_at for c in self._children.values() if c.kill_at is not None]
        return None if not deadlines else max(0.0, min(deadlines) - time.monotonic())

    def _jobs_ready(self, selector: selectors.BaseSelector) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job[0] == "start":
                self._start(selector, job[1], job[2], job[3])
            elif job[0] == "stop" and job[1] in self._children:
                self._terminate(self._children[job[1]], job[2])
            elif job[0] == "read":
                data = None
                if len(job[2]) == 64 and job[2].isalnum():  # a hash, not a path
                    with contextlib.suppress(OSError):
                        data = self.bundle_path(job[2]).read_bytes()
                self.done.put(("bundle", job[1], job[2], data))
                self._notify()
            elif job[0] == "close":
                self._closing = True
                for child in self._children.values():
                    self._terminate(child, job[1])

    def _start(
        self, selector: selectors.BaseSelector, run_id: int, data: bytes, digest: str
    ) -> None:
        try:
            app_dir = self.cache.install(data, digest)
            self.bundles.mkdir(parents=True, exist_ok=True)
            target = self.bundle_path(digest)
            if not target.exists():
                tmp = target.with_suffix(".part")
                tmp.write_bytes(data)
                os.replace(tmp, target)
        except (BundleError, OSError) as exc:
            self._exited(run_id, 2, f"the app bundle was refused: {exc}", "")
            return
        cmd = [sys.executable, "-m", _SERVER_APP_MODULE, "--app-dir", str(app_dir)]
        cmd += ["--link", self.app_endpoint, "--run-id", str(run_id)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", RUN_SECRET_ENV: run_secret(run_id)}
        pipe, out = subprocess.PIPE, subprocess.STDOUT
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            cmd, stdout=pipe, stderr=out, stdin=subprocess.DEVNULL, env=env
        )
        assert proc.stdout is not None  # noqa: S101 - stdout=PIPE
        os.set_blocking(proc.stdout.fileno(), False)
        child = _Child(run_id, proc)
        self._children[run_id] = child
        selector.register(proc.stdout, selectors.EVENT_READ, child)
        log.info("server_app_started", run_id=run_id, pid=proc.pid, bundle=digest[:12])

    def _read(self, selector: selectors.BaseSelector, child: _Child) -> None:
        assert child.proc.stdout is not None  # noqa: S101
        try:
            chunk = child.proc.stdout.read(65536)
        except BlockingIOError:
            return
        if chunk:
            child.buffer += chunk
            *lines, child.buffer = child.buffer.split(b"\n")
            while len(child.buffer) > MAX_LINE:  # no newline in sight: a piece goes out as is
                lines.append(child.buffer[:MAX_LINE])
                child.buffer = child.buffer[MAX_LINE:]
            self._lines(child, [line.decode("utf-8", "replace") for line in lines])
            return
        selector.unregister(child.proc.stdout)  # EOF: the process is gone or closing
        child.proc.stdout.close()
        if child.buffer:
            self._lines(child, [child.buffer.decode("utf-8", "replace")])
        code = child.proc.wait()
        del self._children[child.run_id]
        error = ""
        if code != 0:
            marked = [line for line in child.tail if line.startswith(ERROR_MARK)]
            error = (
                marked[-1][len(ERROR_MARK) :]
                if marked
                else f"the ServerApp exited with code {code}"
            )
        self._exited(child.run_id, code, error, "\n".join(child.tail) if code else "")

    def _lines(self, child: _Child, lines: list[str]) -> None:
        now = time.time()
        for line in lines:
            self.store.add_event("log", now, run_id=child.run_id, data={"line": line})
        child.tail = (child.tail + lines)[-_TAIL:]
        self.done.put(("log", child.run_id))
        self._notify()

    def _exited(self, run_id: int, code: int, error: str, traceback_text: str) -> None:
        log.info("server_app_exited", run_id=run_id, code=code, error=error)
        self.done.put(("exited", run_id, code, error, traceback_text))
        self._notify()

    def _terminate(self, child: _Child, grace: float) -> None:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            child.kill_at = time.monotonic() + grace

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for child in self._children.values():
            if child.kill_at is not None and now >= child.kill_at and child.proc.poll() is None:
                child.proc.kill()
                child.kill_at = None
