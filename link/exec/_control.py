"""The control endpoint: what the ``fedzero`` CLI asks of a link.

Driven by the link's IO thread. Queries read the store's committed state
through a WAL reader (a snapshot read that never waits for the writer) and
overlay the live state of runs in this process; actions (submit, stop) go
through the router and the exec service.
"""

from __future__ import annotations

import time
from typing import Any, Final

import structlog
import zmq

from fedzero.core import DeserializationError, ErrorCode
from fedzero.core.bundles import BundleError, read_manifest
from fedzero.core.wire import control, parse_envelope

from .._state import Run, RunStatus
from ..routing import Router
from ..store import StoreReader
from ._service import ExecService

log = structlog.get_logger(__name__)

_PAGE: Final = 500  # log events per answer


class Control:
    """Answers the CLI on the control ROUTER socket.

    Args:
        sock: the bound control ROUTER.
        router: the link's router (runs, nodes).
        exec_service: starts and stops ServerApp processes (None: no state dir,
            so runs cannot be submitted).
        reader: the store's reader.
    """

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        router: Router,
        exec_service: ExecService | None,
        reader: StoreReader,
    ) -> None:
        self._sock = sock
        self._router = router
        self._exec = exec_service
        self._reader = reader
        self._followers: dict[tuple[bytes, int], int] = {}  # (peer, run) -> last event id sent
        self._syncs: list[tuple[bytes, int]] = []  # (peer, write sequence to wait for)

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
            self._send(rid, control("runs", runs=self._runs(min(header["limit"], 1000))))
        elif kind == "logs":
            self._logs(rid, header["run_id"], header["since_id"], header["follow"])
        elif kind == "stop_run":
            self._stop(rid, header["run_id"])
        elif kind == "list_nodes":
            self._send(rid, control("node_list", nodes=self._nodes()))
        elif kind == "sync":  # answered once everything queued so far is committed
            self._syncs.append((rid, self._router.store.submitted))
            self._answer_syncs()
        else:
            self._refuse(rid, ErrorCode.UNSUPPORTED, f"kind {kind!r} not accepted here")

    def tick(self) -> None:
        """Push new log lines to ``fedzero log --follow`` clients; answer ``sync``."""
        for (rid, run_id), since in list(self._followers.items()):
            self._follow_once(rid, run_id, since)
        self._answer_syncs()

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
        data = bytes(views[1])
        try:  # the manifest only: the exec thread verifies every file off the IO loop
            manifest = read_manifest(data, expected_hash=app["hash"])
        except BundleError as exc:
            self._refuse(rid, ErrorCode.REJECTED, f"bundle refused: {exc}")
            return
        digest = app["hash"]
        config = {**manifest.get("config", {}), **header["run_config"]}
        run = self._router.create_run(config, f"{manifest['name']}@{digest[:12]}", digest)
        self._exec.start(run.run_id, data, digest)
        self._send(rid, control("submitted", run_id=run.run_id))

    def _stop(self, rid: bytes, run_id: int) -> None:
        run = self._router.runs.get(run_id)
        if run is None:
            stored = self._reader.get_run(run_id)
            status = stored.status if stored else "unknown"
            self._send(rid, control("stopped", run_id=run_id, status=status))
            return
        if run.status == RunStatus.RUNNING:
            self._router.stop_run(run, "stopped by the operator")
            if self._exec is not None:
                self._exec.stop(run_id)
        self._send(rid, control("stopped", run_id=run_id, status=str(run.status)))

    def _logs(self, rid: bytes, run_id: int, since: int, follow: bool) -> None:
        if follow:
            self._followers[(rid, run_id)] = since
            self._follow_once(rid, run_id, since)
        else:
            events = self._reader.events(since_id=since, run_id=run_id, limit=_PAGE)
            done = len(events) < _PAGE
            self._send(
                rid,
                control(
                    "log_lines", run_id=run_id, events=[e.as_dict() for e in events], done=done
                ),
            )

    def _follow_once(self, rid: bytes, run_id: int, since: int) -> None:
        events = self._reader.events(since_id=since, run_id=run_id, limit=_PAGE)
        ended = self._ended(run_id)
        done = ended and len(events) < _PAGE
        if events or done:
            last = events[-1].id if events else since
            rows = [e.as_dict() for e in events]
            ok = self._send(rid, control("log_lines", run_id=run_id, events=rows, done=done))
            if not ok or done:
                self._followers.pop((rid, run_id), None)
            else:
                self._followers[(rid, run_id)] = last

    def _ended(self, run_id: int) -> bool:
        run = self._router.runs.get(run_id)
        if run is not None:  # over, and every event up to its end is committed (readable)
            over = run.status != RunStatus.RUNNING and run.exec_done
            return over and self._router.store.committed >= run.ended_seq
        stored = self._reader.get_run(run_id)
        return stored is None or stored.status != "running"

    # ----------------------------------------------------------------- views

    def _runs(self, limit: int) -> list[dict[str, Any]]:
        rows = {r.run_id: r.as_dict() for r in self._reader.list_runs(limit=limit)}
        for run in self._router.runs.values():  # live state wins over what is committed
            rows[run.run_id] = {**rows.get(run.run_id, {}), **_live(run)}
        return sorted(rows.values(), key=lambda r: -int(r["run_id"]))[:limit]

    def _nodes(self) -> list[dict[str, Any]]:
        rows = {n.node_id: n.as_dict() for n in self._reader.list_nodes()}
        for node in self._router.nodes.values():
            live = {
                "node_id": node.node_id,
                "online": node.online,
                "node_config": node.node_config,
                "bytes_in": node.bytes_in,
                "bytes_out": node.bytes_out,
            }
            rows[node.node_id] = {**rows.get(node.node_id, {}), **live}
        return sorted(rows.values(), key=lambda r: int(r["node_id"]))

    def _send(self, rid: bytes, frames: list[Any]) -> bool:
        try:
            self._sock.send_multipart([rid, *frames])
        except zmq.ZMQError:
            return False
        return True

    def _refuse(self, rid: bytes, code: ErrorCode, reason: str) -> None:
        log.warning("control_request_refused", reason=reason)
        self._send(rid, control("refused", code=int(code), reason=reason))


def _live(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "status": str(run.status),
        "app": run.app,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "rounds_done": run.rounds_done,
        "nodes": sorted(run.nodes),
        "replies": run.replies,
        "failures": run.failures,
        "error": run.error,
        "now": time.time(),
    }
