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
from typing import Any, Final

import structlog
import zmq

from fedzero.core import DeserializationError, ErrorCode
from fedzero.core.wire import (
    ENDPOINT_KINDS,
    MAX_ID,
    control,
    decode_content,
    decode_metadata,
    decode_metrics,
    encode_header,
    finite_json,
    frames_nbytes,
    parse_envelope,
    parse_payload,
)

from .._config import LinkConfig
from .._state import Node, Pending, Run, RunStatus, run_secret, same_secret
from ..rounds import AggregateSpec
from ._core import RoutingCore
from ._runs import RunLifecycle

log = structlog.get_logger(__name__)

MAX_TARGETS: Final = 65_536
"""Most destinations of one push."""


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
        if kind not in ENDPOINT_KINDS["app"]:
            core.stats["app_unexpected_kind"] += 1
            reason = f"kind {kind!r:.40} is not accepted on the link's app endpoint (ServerApps)"
            core.refuse(core.app, rid, ErrorCode.UNSUPPORTED, reason)
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
            self._runs.said_bye(run)

    def answer_node_waiters(self, now: float) -> None:
        """Answer ``get_nodes`` calls that have enough nodes, or whose time is up."""
        if not self._node_waiters:
            return
        core = self._core
        due = [w for w in self._node_waiters if core.online >= w[1] or now >= w[2]]
        if not due:  # the common case while nodes register: no list built, no sort
            return
        online = sorted(n.node_id for n in core.nodes.values() if n.online)
        for rid, _, _ in due:
            core.send(core.app, rid, control("nodes", node_ids=online))
        self._node_waiters = [w for w in self._node_waiters if w not in due]

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
        elif not same_secret(header.get("secret"), run_secret(run_id)):
            core.stats["app_hello_refused"] += 1
            log.warning("server_app_refused", run_id=run_id, reason="wrong or missing secret")
            reason = f"run {run_id} belongs to the ServerApp the link started for it"
            core.refuse(core.app, rid, ErrorCode.UNAUTHORIZED, reason)
            return
        run = core.runs[run_id]
        if run.app_routing_id is not None and run.app_routing_id != rid:
            core.run_by_app.pop(run.app_routing_id, None)  # the old connection owns nothing
        run.app_routing_id = rid
        run.app_gone_since = 0.0
        core.run_by_app[rid] = run_id
        core.send(core.app, rid, control("app_welcome", run_id=run_id, run_config=run.run_config))

    def _on_report(self, run: Run, header: dict[str, Any]) -> None:
        core = self._core
        try:
            metrics = dict(decode_metrics(header["metrics"], "report.metrics"))
        except DeserializationError as exc:
            core.refuse(core.app, run.app_routing_id or b"", ErrorCode.MALFORMED, str(exc))
            return
        at, server_round = time.time(), header["round"]
        # rounds_done and the run's counters in the round's commit (they agree after a crash)
        core.store.upsert_round(run.run_id, server_round, metrics, at, counters=run.counters())
        run.rounds_done = max(run.rounds_done, server_round)
        data = {"round": server_round, "metrics": finite_json(metrics)}
        core.store.add_event("round_reported", at, run_id=run.run_id, data=data)
        log.info("round_reported", run_id=run.run_id, round=server_round, metrics=metrics)

    def check_apps(self, now: float) -> None:
        """Fail runs whose ServerApp connection is gone for longer than the liveness budget.

        The probe is a ``pong`` (which a ServerApp ignores): the app ROUTER says at
        once when a peer's connection is gone. A busy ServerApp is not silent to
        this probe: its connection stays.
        """
        core = self._core
        for run in list(core.runs.values()):
            rid = run.app_routing_id
            if run.status != RunStatus.RUNNING or rid is None or not run.exec_done:
                continue  # (a process the exec service supervises is reported when it exits)
            if core.send(core.app, rid, control("pong")):
                run.app_gone_since = 0.0
            elif not run.app_gone_since:
                run.app_gone_since = now
            elif now - run.app_gone_since > core.config.heartbeat_timeout:
                core.stats["server_apps_vanished"] += 1
                self._runs.end(run, RunStatus.FAILED, "its ServerApp vanished (connection gone)")

    # ------------------------------------------------------------------ pushes

    def _on_push(
        self, rid: bytes, run: Run, header: dict[str, Any], views: list[memoryview]
    ) -> None:
        core = self._core
        payload = views[1:]
        try:
            targets = _targets(header["dst"], core.nodes)
            template = decode_metadata(header["metadata"])
            arrays = parse_payload(payload, core.limits) if payload else {}
            content = decode_content(header["content"], arrays, core.limits)
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
                template.ttl,
                template.created_at,
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
        elif (backlog := _backlog_problem(node, frames_nbytes(frames), core.config)) is not None:
            core.stats["node_backlog_full"] += 1
            core.fail(entry, ErrorCode.OVERLOADED, backlog)
        else:
            if run.run_id not in node.informed_runs:
                if not run.announcement:  # encoded once per run, not once per node
                    run.announcement = control(
                        "run", run_id=run.run_id, run_config=run.run_config, bundle=run.bundle_hash
                    )
                if not core.to_node(node, run.announcement):
                    reason = f"node {node.node_id} unreachable"
                    core.fail(entry, ErrorCode.NODE_UNAVAILABLE, reason)
                    return
                node.informed_runs.add(run.run_id)
            core.pending.add(entry)
            if core.to_node(node, frames):
                nbytes = frames_nbytes(frames)
                run.messages_sent += 1
                run.nodes.add(node.node_id)
                run.bytes_out += nbytes
                node.bytes_out += nbytes
                node.sent(entry.message_id, nbytes)


def _backlog_problem(node: Node, nbytes: int, config: LinkConfig) -> str | None:
    """Why ``node`` gets no more tasks now (None: it does).

    What a node has not answered may still sit unread in its queue on the link;
    past ``max_upload_mb`` of it, its new tasks fail (one task alone always goes).
    """
    cap = config.max_upload_bytes
    if not node.backlog or node.backlog + nbytes <= cap:
        return None
    return (
        f"node {node.node_id} has {node.backlog} bytes of tasks unanswered "
        f"(cap {cap}): it is not reading"
    )


def _targets(raw: list[Any], nodes: dict[int, Node]) -> list[tuple[int, str]]:
    """The push's ``[node_id, message_id]`` pairs, checked in O(targets).

    Raises:
        DeserializationError: too many, malformed, repeated message ids, or node
            ids the link never registered.
    """
    if len(raw) > MAX_TARGETS:
        raise DeserializationError(f"push.dst: {len(raw)} destinations exceed {MAX_TARGETS}")
    out: list[tuple[int, str]] = []
    seen: set[str] = set()
    unknown: list[int] = []
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
        if item[0] not in nodes:
            unknown.append(item[0])
        out.append((item[0], item[1]))
    if unknown:
        raise DeserializationError(
            f"push.dst: {len(unknown)} node ids are not registered here, e.g. {unknown[:5]}"
        )
    return out
