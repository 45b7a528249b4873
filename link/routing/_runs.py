"""Runs from start to end: created, stopped, ended by their ServerApp or its process.

A run's terminal status is recorded once here, with its counters; its pending
messages, rounds and credit are dropped and its nodes told (``run_end``).
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from fedzero.core.wire import control

from .._state import Run, RunStatus
from ._core import RoutingCore

log = structlog.get_logger(__name__)


class RunLifecycle:
    """Creates and ends runs (IO thread only).

    Args:
        core: the router's shared state.
    """

    def __init__(self, core: RoutingCore) -> None:
        self._core = core

    def create(self, run_config: dict[str, Any], app: str, bundle_hash: str) -> Run:
        """Start a run (for an in-process ServerApp, or one the exec service starts)."""
        store = self._core.store
        run_id = store.next_run_id()
        exec_done = not bundle_hash  # else its ServerApp process is about to start
        run = Run(run_id, run_config, None, app=app, bundle_hash=bundle_hash, exec_done=exec_done)
        self._core.runs[run_id] = run
        store.create_run(run_id, run_config, app, run.started_at)
        store.add_event("run_started", time.time(), run_id=run_id, data={"app": app})
        log.info("run_started", run_id=run_id, app=app)
        return run

    def close_all(self, reason: str) -> None:
        """Record every running run as interrupted (the link is going away)."""
        for run in list(self._core.runs.values()):
            if run.status == RunStatus.RUNNING:
                self.end(run, RunStatus.INTERRUPTED, reason)

    def on_exited(self, run_id: int, code: int, error: str, traceback_text: str) -> None:
        """A run's ServerApp process exited: record the run's outcome."""
        run = self._core.runs.get(run_id)
        if run is None:
            return
        store = self._core.store
        run.exec_done = True
        run.ended_seq = store.submitted  # its last log lines are queued before this
        if run.status == RunStatus.RUNNING:  # (else stopped or interrupted: that stands)
            status = RunStatus.FINISHED if code == 0 else RunStatus.FAILED
            self.end(run, status, error, traceback_text)

    def said_bye(self, run: Run) -> None:
        """A run's ServerApp said ``app_bye``.

        An in-process ServerApp's run ends ``finished`` now. For a process the exec
        service started, its exit decides (:meth:`on_exited`: a non-zero exit after
        ``app_bye`` is a failure), so the terminal status is recorded once; until
        then the connection owns nothing.
        """
        if run.exec_done:
            self.end(run, RunStatus.FINISHED)
        elif run.app_routing_id is not None:
            self._core.run_by_app.pop(run.app_routing_id, None)

    def end(self, run: Run, status: RunStatus, error: str = "", traceback_text: str = "") -> None:
        """End ``run`` with ``status``: drop its work, tell its nodes, record it."""
        core = self._core
        run.status = status
        run.ended_at = ended_at = time.time()
        for entry in core.pending.pop_run(run.run_id):
            core.credit.release(entry.message_id)
        core.rounds.drop_run(run.run_id)
        core.grant(core.credit.drop_run(run.run_id))
        for node in core.nodes.values():
            if run.run_id in node.informed_runs and node.online:
                node.informed_runs.discard(run.run_id)
                core.to_node(node, control("run_end", run_id=run.run_id))
        if run.app_routing_id is not None:
            core.run_by_app.pop(run.app_routing_id, None)
        run.error = error
        self._record_end(run, ended_at, traceback_text)
        log.info(
            "run_ended",
            run_id=run.run_id,
            status=str(status),
            messages=run.messages_sent,
            replies=run.replies,
            failures=run.failures,
            secs=round(ended_at - run.started_at, 3),
        )

    def record_traffic(self) -> None:
        """Record the counters of every running run (messages, replies, bytes)."""
        for run in self._core.runs.values():
            if run.status == RunStatus.RUNNING:
                self._record_counters(run)

    def _record_counters(self, run: Run) -> None:
        self._core.store.update_run(run.run_id, **run.counters(), nodes=sorted(run.nodes))

    def _record_end(self, run: Run, ended_at: float, traceback_text: str) -> None:
        store, status = self._core.store, str(run.status)
        self._record_counters(run)
        error = run.error
        store.end_run(run.run_id, status, ended_at, error=error, traceback=traceback_text)
        data = {"status": status, "error": error}
        store.add_event("run_ended", ended_at, run_id=run.run_id, data=data)
        run.ended_seq = store.submitted
