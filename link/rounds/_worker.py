"""Link-side aggregation: replies are folded as they arrive; one result goes back.

The IO thread owns every round's bookkeeping (:class:`~._roundbook.RoundBook`);
the numeric work (begin, fold, finish) runs on one fold worker thread, which
reports back through a queue and a notification. The worker folds straight
from the received frame buffers (read-only views), so a reply's memory is
released as soon as it is folded, and with it the reply's upload credit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

Job = tuple[Any, ...]


class FoldWorker:
    """One thread that does every round's numeric work, in arrival order.

    Jobs go in with :meth:`submit`; outcomes come back on :attr:`done`, and
    after queuing outcomes the worker calls ``notify`` (from its own thread) so
    the IO thread knows to read them.

    Args:
        notify: tells the IO thread that :attr:`done` holds outcomes; must be
            safe to call from another thread.
        warm: compile every kernel before taking the first job.
    """

    def __init__(self, notify: Callable[[], None], warm: bool = True) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._notify = notify
        self._warm = warm
        self._thread = threading.Thread(target=self._run, name="fedzero-fold", daemon=True)
        self._thread.start()

    def submit(self, *job: Any) -> None:
        """Queue a job: ``(kind, round_id, ...)``."""
        self._jobs.put(job)

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued jobs and stop the thread."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        # Imported here, on this thread, on purpose (not to break a cycle: _folding
        # never imports this module). The kernels and Numba take seconds to load:
        # the link serves meanwhile, and a process that imports fedzero.link without
        # aggregating (each ServerApp the exec service starts) never loads them.
        from ._folding import RoundState, warmup

        states: dict[str, RoundState] = {}
        if self._warm:
            warmup()
        lookahead: list[Job | None] = []  # a job taken early, handled next
        while (job := lookahead.pop() if lookahead else self._jobs.get()) is not None:
            batch = self._batch(job, lookahead)
            outcomes = RoundState.process(states, batch)
            # Drop our references to the folded replies before waiting for more
            # work: their received frames are freed now, not after the next job.
            del batch, job
            for outcome in outcomes:
                self.done.put(outcome)
            self._notify()

    def _batch(self, job: Job, lookahead: list[Job | None]) -> list[Job]:
        """``job``, and the folds queued right behind it (several replies in one pass)."""
        batch = [job]
        while job[0] == "fold":
            try:
                nxt = self._jobs.get_nowait()
            except queue.Empty:
                break
            if nxt is None or nxt[0] != "fold":
                lookahead.append(nxt)  # strictly next: a round's begin must stay
                break  # ahead of its folds, whatever other runs interleave
            batch.append(nxt)
        return batch
