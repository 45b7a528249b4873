"""Link-side aggregation: replies are folded as they arrive; one result goes back.

The IO thread owns every round's bookkeeping (:class:`~._roundbook.RoundBook`);
the numeric work (begin, fold, finish) runs on one fold worker thread, which
reports back through a queue and a notification. The worker folds straight
from the received frame buffers (read-only views), so a reply's memory is
released as soon as it is folded, and with it the reply's upload credit.

No job kills the thread: a batch that raises fails the rounds it touched (their
ServerApps get ``AGGREGATION_FAILED`` with the cause) and the worker goes on
with the next job. Should the thread die all the same, :attr:`FoldWorker.alive`
turns False and the link reports itself unhealthy. A round's checkpoint is
written after its result is handed to the IO thread, off the round's critical
path.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import structlog

from ..store import injected_faults

log = structlog.get_logger(__name__)

_HOLD_SECS: Final = 60.0  # the longest a test fault holds checkpoint writes

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
        faults = injected_faults()  # tests only (see fedzero.link.store)
        self._faults = set(faults)
        self._hold = faults.get("checkpoint_hold_while", "")
        self._warming = warm
        self.error = ""
        """Why the thread died ("" while it lives or after a clean close)."""
        self._thread = threading.Thread(target=self._main, name="fedzero-fold", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the thread still takes jobs (False once it died or was closed)."""
        return self._thread.is_alive()

    def submit(self, *job: Any) -> None:
        """Queue a job: ``(kind, round_id, ...)``."""
        self._jobs.put(job)

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued jobs and stop the thread.

        A worker still compiling its kernels is not waited for (it has no job
        to finish, and compiling takes seconds): a shutdown does not stall on it.
        """
        self._jobs.put(None)
        self._thread.join(0.0 if self._warming else timeout)

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the thread is gone: say so, loudly, once
            self.error = f"{type(exc).__name__}: {exc}"
            log.critical("fold_worker_died", error=self.error, exc_info=True)
            self._notify()

    def _run(self) -> None:
        # Imported here, on this thread, on purpose (not to break a cycle: _folding
        # never imports this module). The kernels and Numba take seconds to load:
        # the link serves meanwhile, and a process that imports fedzero.link without
        # aggregating (each ServerApp the exec service starts) never loads them.
        from ._folding import RoundState, warmup
        from ._folding import _checkpoint as save

        states: dict[str, RoundState] = {}
        if self._warm:
            warmup()
            self._warming = False
        lookahead: list[Job | None] = []  # a job taken early, handled next
        while (job := lookahead.pop() if lookahead else self._jobs.get()) is not None:
            batch = self._batch(job, lookahead)
            saves = [j[2] for j in batch if j[0] == "finish" and j[2] is not None]
            batch = [(*j[:2], None) if j[0] == "finish" else j for j in batch]
            try:
                self._fault(batch, "fold_die")
                self._fault(batch, "fold_raise_once")
                outcomes = RoundState.process(states, batch)
            except Exception as exc:  # the rounds of this batch fail, nothing else
                outcomes = _failed(states, batch, exc)
            # Drop our references to the folded replies before waiting for more
            # work: their received frames are freed now, not after the next job.
            del batch, job
            for outcome in outcomes:
                self.done.put(outcome)
            self._notify()
            if saves and self._hold:
                _hold_while(self._hold)
            _save_checkpoints(save, saves, outcomes)

    def _fault(self, batch: list[Job], name: str) -> None:
        """Raise the test fault ``name`` once, on the batch that finishes a round."""
        if name in self._faults and any(j[0] == "finish" for j in batch):
            self._faults.discard(name)
            if name == "fold_die":
                raise SystemExit(f"injected test fault {name}")
            raise RuntimeError(f"injected test fault {name}")

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


def _failed(states: dict[str, Any], batch: list[Job], exc: Exception) -> list[Job]:
    """Outcomes failing every round ``batch`` touched (the batch raised ``exc``)."""
    cause = f"aggregation failed: {type(exc).__name__}: {exc}"
    log.error("aggregation_failed", error=cause, rounds=sorted({j[1] for j in batch}))
    outcomes: list[Job] = []
    for round_id in dict.fromkeys(j[1] for j in batch):
        states.pop(round_id, None)  # later jobs of the round find no state
        outcomes.append(("failed", round_id, cause))
    # each fold is released by the IO thread (its credit, its bookkeeping)
    outcomes += [("folded", j[1], j[2], j[3], cause) for j in batch if j[0] == "fold"]
    return outcomes


def _hold_while(path: str) -> None:
    """Test fault: wait while ``path`` exists (at most a minute) before writing checkpoints."""
    deadline = time.monotonic() + _HOLD_SECS
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def _save_checkpoints(
    save: Callable[..., None], saves: list[tuple[Any, ...]], outcomes: list[Job]
) -> None:
    """Write the global model of each round finished here (after its result went out)."""
    if not saves:
        return
    models = {o[1]: o[2] for o in outcomes if o[0] == "finished" and o[2] is not None}
    # a checkpoint job is (checkpoint_dir, run_id, round, keep_last, round_id)
    for directory, run_id, server_round, keep, round_id in saves:
        arrays = models.get(round_id)
        if arrays is not None:
            save(arrays, Path(directory), run_id, server_round, keep)
