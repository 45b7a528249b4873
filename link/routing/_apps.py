"""The app side of the router: what ServerApps say, and the fan-out of their pushes.

A ServerApp attaches to its run with ``app_hello``, waits for nodes
(``get_nodes``), pushes messages to nodes (optionally asking the link to
aggregate the round), acks the replies it received, reports round metrics and
says ``app_bye``. A push is received once; its payload frames are sent to every
destination node as views of the received buffers, without copying.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import structlog
import zmq

from fedzero.core import DeserializationError, ErrorCode, MetricRecord
from fedzero.core.wire import (
    MAX_ID,
    control,
    decode_content,
    decode_metadata,
    encode_header,
    frames_nbytes,
    parse_envelope,
    parse_payload,
)

from .._state import Pending, Run, RunStatus
from ..rounds import AggregateSpec
from ._core import RoutingCore
from ._runs import RunLifecycle

log = structlog.get_logger(__name__)


class AppSide:
    """Handles messages from ServerApps (IO thread only).

    Args:
        core: the router's shared state.
        runs: creates runs (``app_hello`` without a run id) and ends them.
    """

    def __init__(self, core: RoutingCore, runs: RunLifecycle) -> None:
        self._core = core
        self._runs = runs
        self._node_waiters: list[tuple[bytes, int, float]] = []  # (app, min nodes, deadline)

    def on_message(self, rid: bytes, frames: list[zmq.Frame]) -> None:
        """Handle one message from the ServerApp on connection ``rid``."""
        core = self._core
        try:
            kind, header, views = parse_envelope(frames, core.limits)
        except DeserializationError as exc:
            core.stats["app_malformed"] += 1
            log.warning("app_message_malformed", error=str(exc))
            core.refuse(core.app, rid, ErrorCode.MALFORMED, str(exc))
            return
        if kind == "app_hello":
            if core.draining:
                core.refuse(core.app, rid, ErrorCode.RUN_STOPPED, "the link is shutting down")
            else:
                self._on_app_hello(rid, header)
            return
        run = core.runs.get(core.run_by_app.get(rid, -1))
        if run is None:
            core.refuse(core.app, rid, ErrorCode.UNAUTHORIZED, "say app_hello first")
        elif kind == "ping":
            core.send(core.app, rid, control("pong"))
        elif kind == "get_nodes":
            deadline = time.monotonic() + min(float(header["timeout"]), 3600.0)
            self._node_waiters.append((rid, header["min_nodes"], deadline))
            self.answer_node_waiters(time.monotonic())
        elif kind == "report":
            self._on_report(run, header)
        elif kind == "ack":
            for message_id in header["message_ids"]:
                if isinstance(message_id, str):
                    core.release(message_id)
        elif kind == "push":
            self._on_push(rid, run, header, views)
        elif kind == "app_bye":
            self._runs.end(run, RunStatus.FINISHED)
        else:
            core.refuse(core.app, rid, ErrorCode.UNSUPPORTED, f"kind {kind!r} not accepted here")

    def answer_node_waiters(self, now: float) -> None:
        """Answer ``get_nodes`` calls that have enough nodes, or whose time is up."""
        if not self._node_waiters:
            return
        core = self._core
        online = sorted(n.node_id for n in core.nodes.values() if n.online)
        waiting = []
        for rid, min_nodes, deadline in self._node_waiters:
            if len(online) >= min_nodes or now >= deadline:
                core.send(core.app, rid, control("nodes", node_ids=online))
            else:
                waiting.append((rid, min_nodes, deadline))
        self._node_waiters = waiting

    def next_waiter_deadline(self) -> float:
        """Seconds until a ``get_nodes`` call times out (inf: none waits)."""
        if not self._node_waiters:
            return float("inf")
        return min(d for _, _, d in self._node_waiters) - time.monotonic()

    def _on_app_hello(self, rid: bytes, header: dict[str, Any]) -> None:
        core = self._core
        run_id = header.get("run_id")
        if run_id is None:
            run_id = self._runs.create(dict(header["run_config"]), "", "").run_id
        elif run_id not in core.runs:
            core.refuse(core.app, rid, ErrorCode.UNAUTHORIZED, f"unknown run {run_id}")
            return
        elif core.runs[run_id].status != RunStatus.RUNNING:
            core.refuse(core.app, rid, ErrorCode.RUN_STOPPED, f"run {run_id} is over")
            return
        run = core.runs[run_id]
        run.app_routing_id = rid
        core.run_by_app[rid] = run_id
        core.send(core.app, rid, control("app_welcome", run_id=run_id, run_config=run.run_config))

    def _on_report(self, run: Run, header: dict[str, Any]) -> None:
        core = self._core
        try:
            metrics = dict(MetricRecord(header["metrics"]))
        except (TypeError, ValueError) as exc:
            core.refuse(core.app, run.app_routing_id or b"", ErrorCode.MALFORMED, str(exc))
            return
        at = time.time()
        core.store.upsert_round(run.run_id, header["round"], metrics, at)
        run.rounds_done = max(run.rounds_done, header["round"])
        core.store.update_run(run.run_id, rounds_done=run.rounds_done)
        log.info("round_reported", run_id=run.run_id, round=header["round"], **metrics)

    # ------------------------------------------------------------------ pushes

    def _on_push(
        self, rid: bytes, run: Run, header: dict[str, Any], views: list[memoryview]
    ) -> None:
        core = self._core
        payload = views[1:]
        try:
            template = decode_metadata(header["metadata"])
            arrays = parse_payload(payload, core.limits) if payload else {}
            content = decode_content(header["content"], arrays, core.limits)
            targets = _targets(header["dst"])
            aggregate = header.get("aggregate")
            spec = None if aggregate is None else AggregateSpec.from_wire(aggregate)
        except DeserializationError as exc:
            core.stats["app_malformed"] += 1
            log.warning("push_malformed", run_id=run.run_id, error=str(exc))
            core.refuse(core.app, rid, ErrorCode.MALFORMED, str(exc))
            return
        if template.run_id != run.run_id:
            reason = "messages must carry this run's id"
            core.refuse(core.app, rid, ErrorCode.UNAUTHORIZED, reason)
            return
        round_id = ""
        if spec is not None:
            try:
                core.rounds.begin(spec, run.run_id, rid, template, content, len(targets))
            except DeserializationError as exc:
                core.refuse(core.app, rid, ErrorCode.MALFORMED, str(exc))
                return
            round_id = spec.round_id
        expires_at = template.created_at + template.ttl
        for node_id, message_id in targets:
            meta = dataclasses.replace(template, message_id=message_id, dst_node_id=node_id)
            entry = Pending(
                message_id,
                run.run_id,
                node_id,
                rid,
                meta.message_type,
                meta.group_id,
                expires_at,
                round_id,
            )
            self._deliver(run, entry, [encode_header(meta, header["content"]), *payload])

    def _deliver(self, run: Run, entry: Pending, frames: list[Any]) -> None:
        core = self._core
        node = core.nodes.get(entry.node_id)
        if core.draining:
            core.fail(entry, ErrorCode.RUN_STOPPED, "the link is shutting down")
        elif entry.message_id in core.pending or entry.message_id in core.recent:
            core.fail(entry, ErrorCode.REJECTED, "duplicate message id")
        elif node is None or not node.online:
            core.fail(entry, ErrorCode.NODE_UNAVAILABLE, f"node {entry.node_id} is not online")
        elif entry.expires_at <= time.time():
            core.fail(entry, ErrorCode.MESSAGE_EXPIRED, "the message expired before delivery")
        else:
            if run.run_id not in node.informed_runs:
                info = control(
                    "run", run_id=run.run_id, run_config=run.run_config, bundle=run.bundle_hash
                )
                if not core.to_node(node, info):
                    reason = f"node {node.node_id} unreachable"
                    core.fail(entry, ErrorCode.NODE_UNAVAILABLE, reason)
                    return
                node.informed_runs.add(run.run_id)
            core.pending.add(entry)
            if core.to_node(node, frames):
                run.messages_sent += 1
                run.nodes.add(node.node_id)
                node.bytes_out += frames_nbytes(frames)


def _targets(raw: list[Any]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    seen: set[str] = set()
    for item in raw:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[1], str)
            and isinstance(item[0], int)
            and not isinstance(item[0], bool)
            and 0 < item[0] <= MAX_ID
            and 0 < len(item[1]) <= 128
        ):
            raise DeserializationError("push.dst must be a list of [node_id, message_id]")
        if item[1] in seen:
            raise DeserializationError(f"push.dst: message id {item[1]!r} appears twice")
        seen.add(item[1])
        out.append((item[0], item[1]))
    return out
