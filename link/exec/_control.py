"""The control endpoint: what the ``fedzero`` CLI asks of a link.

Driven by the link's IO thread, which never reads the store itself: queries
(``ls``, ``log``, ``nodes``, ``stop`` of a past run) and the full check of a
submitted bundle run on the control's worker thread (:class:`~._queries.ReaderThread`),
and the IO thread sends their answers when they are ready (:meth:`Control.answer`).
What is reported is what the store holds; a running run shows its live
counters (the store has them within seconds), never a status the store lacks.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, Final

import structlog
import zmq

from fedzero.core import DeserializationError, ErrorCode
from fedzero.core.bundles import BundleError, open_bundle
from fedzero.core.wire import control, parse_envelope

from .._state import Run, RunStatus
from ..routing import Router
from ..store import RunRow, StoreReader
from ._queries import Finisher, ReaderThread
from ._service import ExecService

log = structlog.get_logger(__name__)

_PAGE: Final = 500  # log events per answer
MAX_BUNDLE_BYTES: Final = 64 * 2**20
"""Largest submitted bundle archive (the files inside are capped at 50 MiB in all)."""


class Control:
    """Answers the CLI on the control ROUTER socket.

    Args:
        sock: the bound control ROUTER.
        router: the link's router (runs, nodes).
        exec_service: starts and stops ServerApp processes (None: no state dir,
            so runs cannot be submitted).
        reader: the store's reader (the control's worker thread owns it).
        notify: wakes the IO thread to call :meth:`answer` (from the worker thread).
    """

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        router: Router,
        exec_service: ExecService | None,
        reader: StoreReader,
        notify: Callable[[], None],
    ) -> None:
        self._sock = sock
        self._router = router
        self._exec = exec_service
        self._worker = ReaderThread(reader, notify)
        self._followers: dict[tuple[bytes, int], int] = {}  # (peer, run) -> last event id sent
        self._reading: set[tuple[bytes, int]] = set()  # followers with a read under way
        self._syncs: list[tuple[bytes, int]] = []  # (peer, write sequence to wait for)

    @property
    def alive(self) -> bool:
        """Whether the control's worker thread runs."""
        return self._worker.alive

    def close(self) -> None:
        """Stop the worker thread (queued queries are answered first, if the socket is open)."""
        self._worker.close()

    def on_control(self, rid: bytes, frames: list[zmq.Frame]) -> None:
        """Handle one request from the CLI."""
        try:
            kind, header, views = parse_envelope(frames)
        except DeserializationError as exc:
            self._refuse(rid, ErrorCode.MALFORMED, str(exc))
            return
        if kind == "submit_run":
            self._submit(rid, header, views)
        elif kind == "list_runs":
            limit = min(header["limit"], 1000)
            self._ask(rid, lambda s: functools.partial(self._send_runs, rid, s.list_runs(limit)))
        elif kind == "logs":
            self._logs(rid, header["run_id"], header["since_id"], header["follow"])
        elif kind == "stop_run":
            self._stop(rid, header["run_id"])
        elif kind == "list_nodes":
            self._ask(rid, lambda s: functools.partial(self._send, rid, self._node_list(s)))
        elif kind == "sync":  # answered once everything queued so far is committed
            self._syncs.append((rid, self._router.store.submitted))
            self._answer_syncs()
        else:
            self._refuse(rid, ErrorCode.UNSUPPORTED, f"kind {kind!r} not accepted here")

    def tick(self) -> None:
        """Read new log lines for ``fedzero log --follow`` clients; answer ``sync``."""
        for (rid, run_id), since in list(self._followers.items()):
            self._follow(rid, run_id, since)
        self._answer_syncs()

    def answer(self) -> None:
        """Send the answers the worker thread has ready (IO thread); one failing fails alone."""
        while not self._worker.done.empty():
            finisher = self._worker.done.get_nowait()
            try:
                finisher()
            except Exception as exc:
                log.exception("control_answer_failed", error=f"{type(exc).__name__}: {exc}")

    def _ask(self, rid: bytes, job: Callable[[StoreReader], Finisher]) -> None:
        def run(reader: StoreReader) -> Finisher:
            try:
                return job(reader)
            except Exception as exc:
                log.exception("control_query_failed", error=f"{type(exc).__name__}: {exc}")
                reason = f"the link could not answer ({type(exc).__name__}: {exc})"
                return functools.partial(self._refuse, rid, ErrorCode.UNKNOWN, reason)

        self._worker.submit(run)

    def _answer_syncs(self) -> None:
        committed = self._router.store.committed
        waiting = []
        for rid, mark in self._syncs:
            if committed >= mark:
                self._send(rid, control("synced", committed=committed))
            else:
                waiting.append((rid, mark))
        self._syncs = waiting

    # --------------------------------------------------------------- requests

    def _submit(self, rid: bytes, header: dict[str, Any], views: list[memoryview]) -> None:
        app = header["app"]
        if self._exec is None:
            self._refuse(
                rid, ErrorCode.UNSUPPORTED, "this link has no state dir: runs cannot be submitted"
            )
            return
        if len(views) != 2 or not isinstance(app.get("hash"), str):
            self._refuse(rid, ErrorCode.MALFORMED, "submit_run needs app.hash and one bundle frame")
            return
        if views[1].nbytes > MAX_BUNDLE_BYTES:
            reason = f"bundle refused: {views[1].nbytes} bytes, over {MAX_BUNDLE_BYTES}"
            self._refuse(rid, ErrorCode.REJECTED, reason)
            return
        if self._degraded(rid):
            return
        data, digest, config = bytes(views[1]), app["hash"], dict(header["run_config"])

        def verify(_: StoreReader) -> Finisher:  # every file, size and the hash, off the IO loop
            try:
                bundle = open_bundle(data, expected_hash=digest)
            except BundleError as exc:
                return functools.partial(
                    self._refuse, rid, ErrorCode.REJECTED, f"bundle refused: {exc}"
                )
            return functools.partial(self._start_run, rid, data, bundle.manifest, digest, config)

        self._ask(rid, verify)

    def _start_run(
        self, rid: bytes, data: bytes, manifest: dict[str, Any], digest: str, config: dict[str, Any]
    ) -> None:
        if self._exec is None or self._degraded(rid):
            return
        if self._router.draining:
            self._refuse(rid, ErrorCode.RUN_STOPPED, "the link is shutting down")
            return
        run_config = {**manifest.get("config", {}), **config}
        run = self._router.create_run(run_config, f"{manifest['name']}@{digest[:12]}", digest)
        self._exec.start(run.run_id, data, digest)
        self._send(rid, control("submitted", run_id=run.run_id))

    def _degraded(self, rid: bytes) -> bool:
        """Refuse a new run while the store cannot write; True if it did."""
        problem = self._router.store.degraded
        if problem:
            reason = f"the state store cannot write ({problem}): the link refuses new runs"
            self._refuse(rid, ErrorCode.OVERLOADED, reason)
        return bool(problem)

    def _stop(self, rid: bytes, run_id: int) -> None:
        run = self._router.runs.get(run_id)
        if run is None:

            def stored(reader: StoreReader) -> Finisher:
                row = reader.get_run(run_id)
                status = row.status if row else "unknown"
                return functools.partial(
                    self._send, rid, control("stopped", run_id=run_id, status=status)
                )

            self._ask(rid, stored)
            return
        if run.status == RunStatus.RUNNING:
            self._router.stop_run(run, "stopped by the operator")
            if self._exec is not None:
                self._exec.stop(run_id)
        self._send(rid, control("stopped", run_id=run_id, status=str(run.status)))

    def _logs(self, rid: bytes, run_id: int, since: int, follow: bool) -> None:
        if follow:
            self._followers[(rid, run_id)] = since
            self._follow(rid, run_id, since)
            return

        def page(reader: StoreReader) -> Finisher:
            events = [e.as_dict() for e in reader.events(since, run_id=run_id, limit=_PAGE)]
            done = len(events) < _PAGE
            lines = control("log_lines", run_id=run_id, events=events, done=done)
            return functools.partial(self._send, rid, lines)

        self._ask(rid, page)

    def _follow(self, rid: bytes, run_id: int, since: int) -> None:
        """Read the follower's next lines (one read under way per follower)."""
        key = (rid, run_id)
        if key in self._reading:
            return
        self._reading.add(key)
        ended = self._ended(run_id)  # before the read: every event up to the end is in it

        def read(reader: StoreReader) -> Finisher:
            over = ended if ended is not None else _stored_over(reader, run_id)
            events = reader.events(since_id=since, run_id=run_id, limit=_PAGE)
            return functools.partial(self._followed, key, since, events, over)

        self._ask(rid, read)

    def _followed(self, key: tuple[bytes, int], since: int, events: list[Any], over: bool) -> None:
        self._reading.discard(key)
        done = over and len(events) < _PAGE
        if not (events or done) or key not in self._followers:
            return
        rid, run_id = key
        rows = [e.as_dict() for e in events]
        ok = self._send(rid, control("log_lines", run_id=run_id, events=rows, done=done))
        if not ok or done:
            self._followers.pop(key, None)
        else:
            self._followers[key] = events[-1].id if events else since

    def _ended(self, run_id: int) -> bool | None:
        """Whether a live run is over with its events committed; None: ask the store."""
        run = self._router.runs.get(run_id)
        if run is None:
            return None
        over = run.status != RunStatus.RUNNING and run.exec_done
        return over and self._router.store.committed >= run.ended_seq

    # ----------------------------------------------------------------- views

    def _send_runs(self, rid: bytes, rows: list[RunRow]) -> None:
        runs = []
        for row in rows:
            out = row.as_dict()
            live = self._router.runs.get(row.run_id)
            if live is not None and row.status == "running":
                out.update(_live(live), rounds_done=max(live.rounds_done, row.rounds_done))
            runs.append(out)
        self._send(rid, control("runs", runs=runs))

    def _node_list(self, reader: StoreReader) -> list[bytes]:
        """The ``node_list`` answer, built and encoded on the query thread (O(N) off the loop).

        The live registry is read as a snapshot: ``dict.copy`` runs under the GIL
        in one step while the IO thread mutates it.
        """
        rows = {n.node_id: n.as_dict() for n in reader.list_nodes()}
        for node in list(self._router.nodes.copy().values()):
            live = {
                "node_id": node.node_id,
                "online": node.online,
                "node_config": node.node_config,
                "bytes_in": node.bytes_in,
                "bytes_out": node.bytes_out,
            }
            rows[node.node_id] = {**rows.get(node.node_id, {}), **live}
        nodes = sorted(rows.values(), key=lambda r: int(r["node_id"]))
        return control("node_list", nodes=nodes)

    def _send(self, rid: bytes, frames: list[Any]) -> bool:
        try:
            self._sock.send_multipart([rid, *frames])
        except zmq.ZMQError:
            return False
        return True

    def _refuse(self, rid: bytes, code: ErrorCode, reason: str) -> None:
        log.warning("control_request_refused", reason=reason)
        self._send(rid, control("refused", code=int(code), reason=reason))


def _stored_over(reader: StoreReader, run_id: int) -> bool:
    row = reader.get_run(run_id)
    return row is None or row.status != "running"


def _live(run: Run) -> dict[str, Any]:
    """A running run's live counters (ahead of the store by a few seconds at most)."""
    return {
        "rounds_done": run.rounds_done,
        "nodes": sorted(run.nodes),
        "messages_sent": run.messages_sent,
        "replies": run.replies,
        "failures": run.failures,
        "bytes_in": run.bytes_in,
        "bytes_out": run.bytes_out,
        "now": time.time(),
    }
