"""The control endpoint's worker thread: store reads and bundle checks off the IO thread.

The IO thread hands it a job (a function of the store's reader); the thread runs
it and queues what the job returns, a *finisher*: a function the IO thread runs
next to send the answer (the control socket is the IO thread's alone). So
``fedzero ls``, ``log`` and ``nodes`` never make the IO loop wait on SQLite, and
a submitted bundle is verified in full (sizes, files, hash) without stalling it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import structlog

from ..store import StoreReader

log = structlog.get_logger(__name__)

Finisher = Callable[[], object]
"""What the IO thread runs once a job is done (it sends the answer)."""
Job = Callable[[StoreReader], Finisher]


class ReaderThread:
    """Runs control jobs on its own thread, in order; their finishers come back on :attr:`done`.

    Args:
        reader: the store reader the jobs read from (this thread's alone).
        notify: called from this thread after it queued a finisher (wakes the IO thread).
    """

    def __init__(self, reader: StoreReader, notify: Callable[[], None]) -> None:
        self._reader = reader
        self._notify = notify
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[Finisher] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fedzero-control", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the thread takes jobs."""
        return self._thread.is_alive()

    def submit(self, job: Job) -> None:
        """Queue ``job`` (any thread)."""
        self._jobs.put(job)

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued jobs, stop the thread and close the reader."""
        self._jobs.put(None)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._reader.close()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                finisher = job(self._reader)
            except Exception as exc:  # this request fails, the thread goes on
                log.exception("control_query_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            self.done.put(finisher)
            self._notify()
