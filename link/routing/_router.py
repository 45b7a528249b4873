"""The router: the link's state machine for nodes, runs and messages.

It is driven by the link's IO thread alone (no locks): :meth:`Router.on_fleet`
and :meth:`Router.on_app` for each received message, :meth:`Router.tick` for
timers. Tensor frames are relayed as views of the received buffers: a push
from a ServerApp is received once and its payload frames are sent to every
destination node without copying.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any, Final

import structlog
import zmq

from fedzero.core import (
    DecodeLimits,
    DeserializationError,
    Error,
    ErrorCode,
    Message,
    Metadata,
    MetricRecord,
    decode,
    encode,
)
from fedzero.core.wire import (
    MAX_ID,
    control,
    decode_content,
    decode_metadata,
    encode_header,
    frames_nbytes,
    new_message_id,
    parse_envelope,
    parse_payload,
)

from .._config import LinkConfig
from .._state import Node, Pending, PendingTable, Run, RunStatus
from ..rounds import AggregateSpec, FoldWorker, RoundBook
from ..store import StoreWriter
from ._credit import CreditRequest, CreditWindow

log = structlog.get_logger(__name__)

_RECENT: Final = 65_536  # answered message ids remembered to name duplicates


class Router:
    """Routes messages between ServerApps (app socket) and nodes (fleet socket).

    Args:
        config: the link's settings.
        fleet: the bound fleet ROUTER (nodes).
        app: the bound app ROUTER (ServerApps).
        stats: counters shared with the link.
        worker: the fold worker that aggregates rounds.
        store: where runs, rounds, nodes and events are recorded (writes are
            queued to the store's own thread: the IO loop never waits on disk).
    """

    def __init__(
        self,
        config: LinkConfig,
        fleet: zmq.Socket[bytes],
        app: zmq.Socket[bytes],
        stats: Counter[str],
        worker: FoldWorker,
        store: StoreWriter,
    ) -> None:
        self.config = config
        self._fleet = fleet
        self._app = app
        self.stats = stats
        self._limits = DecodeLimits()
        self.nodes: dict[int, Node] = {}
        self._node_by_rid: dict[bytes, int] = {}
        self.runs: dict[int, Run] = {}
        self._run_by_app: dict[bytes, int] = {}
        self._pending = PendingTable()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self.credit = CreditWindow(config.max_concurrent_uploads, config.max_upload_bytes)
        self._node_waiters: list[tuple[bytes, int, float]] = []
        self.draining = False
        self.store = store
        self.read_bundle: Callable[[bytes, str], None] | None = None
        """Reads a stored bundle for a node (the exec service's); None without one."""
        checkpoints = None if config.state_dir is None else config.state_dir / "checkpoints"
        self.rounds = RoundBook(worker=worker, store=store, stats=stats, pending=self._pending,
                                release=lambda mid: self._grant(self.credit.release(mid)),
                                to_app=self._to_app, checkpoint_dir=checkpoints,
                                retention=config.checkpoint_retention)  # fmt: skip
        self._traffic_at = 0.0

    @property
    def pending_count(self) -> int:
        """Messages delivered to nodes and not yet answered."""
        return len(self._pending)

    def idle(self) -> bool:
        """Whether nothing is in flight: no pending message, no unfinished round."""
        return not self._pending and not self.rounds

    def fail_all(self, reason: str) -> None:
        """Fail everything in flight with ``RUN_STOPPED`` (shutdown after the grace period)."""
        for entry in self._pending.pop_expired(float("inf")):
            self.credit.release(entry.message_id)
            self._fail(entry, ErrorCode.RUN_STOPPED, reason)
        self.rounds.check_all(force=True)

    def close_runs(self, reason: str) -> None:
        """Record every running run as interrupted (the link is going away)."""
        for run in list(self.runs.values()):
            if run.status == RunStatus.RUNNING:
                self._end_run(run, RunStatus.INTERRUPTED, reason)

    def tick(self) -> None:
        """Run the timers: liveness, expiry, waiting get_nodes calls, round deadlines."""
        now = time.monotonic()
        self._check_liveness(now)
        self._expire(time.time())
        self._answer_node_waiters(now)
        self.rounds.check_all()
        if now >= self._traffic_at:  # byte counters and last-seen, not on every heartbeat
            self._traffic_at = now + 5.0
            wall = time.time()
            for node in self.nodes.values():
                if node.online:
                    self.store.update_node_traffic(
                        node.node_id, node.bytes_in, node.bytes_out, wall
                    )

    def next_deadline(self) -> float:
        """Seconds until the earliest timer that needs :meth:`tick` (may be negative)."""
        wait = float("inf")
        expiry = self._pending.next_expiry()
        if expiry is not None:
            wait = expiry - time.time()
        if self._node_waiters:
            wait = min(wait, min(d for _, _, d in self._node_waiters) - time.monotonic())
        return min(wait, self.rounds.next_deadline())

    # --------------------------------------------------------------- sending

    def _send(self, sock: zmq.Socket[bytes], rid: bytes, frames: list[Any]) -> bool:
        """Send to a peer; False if it is gone (ROUTER_MANDATORY says so)."""
        try:
            sock.send_multipart([rid, *frames], copy=False)
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            return False
        return True

    def _to_node(self, node: Node, frames: list[Any]) -> bool:
        if self._send(self._fleet, node.routing_id, frames):
            return True
        self._node_offline(node, "unreachable")
        return False

    def _to_app(self, rid: bytes, frames: list[Any]) -> bool:
        if self._send(self._app, rid, frames):
            return True
        self.stats["app_unreachable"] += 1
        log.warning("server_app_unreachable", run_id=self._run_by_app.get(rid))
        return False

    def _refuse(
        self, sock: zmq.Socket[bytes], rid: bytes, code: ErrorCode, reason: str, **extra: Any
    ) -> None:
        self._send(sock, rid, control("refused", code=int(code), reason=reason, **extra))

    def _fail(self, entry: Pending, code: ErrorCode, reason: str) -> None:
        """Answer a pending message with an error reply (or a failure of its round)."""
        run = self.runs.get(entry.run_id)
        if run is not None:
            run.failures += 1
        self.stats[f"failed_{code.name.lower()}"] += 1
        if entry.round_id:
            self.rounds.on_failure(entry.round_id, entry.node_id, code, reason)
            return
        now = time.time()
        meta = Metadata(
            run_id=entry.run_id,
            message_id=new_message_id(),
            src_node_id=entry.node_id,
            dst_node_id=0,
            reply_to_message_id=entry.message_id,
            group_id=entry.group_id,
            message_type=entry.message_type,
            ttl=max(0.0, entry.expires_at - now),
            created_at=now,
        )
        self._to_app(
            entry.app_routing_id, encode(Message.from_parts(meta, None, Error(code, reason)))
        )

    def _grant(self, granted: list[CreditRequest]) -> None:
        for req in granted:
            node = self.nodes.get(req.node_id)
            if node is not None and node.online:
                self._to_node(node, control("credit_grant", reply_to=req.reply_to))

    # ------------------------------------------------------------------ timers

    def _check_liveness(self, now: float) -> None:
        budget = self.config.heartbeat_timeout
        for node in [n for n in self.nodes.values() if n.online and now - n.last_seen > budget]:
            self._node_offline(node, f"no heartbeat for {now - node.last_seen:.1f}s")

    def _expire(self, now: float) -> None:
        for entry in self._pending.pop_expired(now):
            self.credit.release(entry.message_id)
            self._fail(entry, ErrorCode.MESSAGE_EXPIRED, "the message's TTL ran out before a reply")

    def _node_offline(self, node: Node, reason: str) -> None:
        if not node.online:
            return
        node.online = False
        self._node_by_rid.pop(node.routing_id, None)
        lost = self._pending.pop_node(node.node_id)
        self.store.set_node_online(node.node_id, False, time.time())
        self.store.add_event(
            "node_offline", time.time(), node_id=node.node_id, data={"reason": reason}
        )
        log.warning("node_offline", node_id=node.node_id, reason=reason, failed_messages=len(lost))
        for entry in lost:
            self._fail(
                entry, ErrorCode.NODE_UNAVAILABLE, f"node {node.node_id} went offline: {reason}"
            )
        self._grant(self.credit.drop_node(node.node_id))

    # ------------------------------------------------------------- fleet side

    def on_fleet(self, rid: bytes, frames: list[zmq.Frame]) -> None:
        self.stats["fleet_in"] += 1
        try:
            kind, header, views = parse_envelope(frames, self._limits)
        except DeserializationError as exc:
            self.stats["fleet_malformed"] += 1
            log.warning("fleet_message_malformed", peer=rid.hex(), error=str(exc))
            self._refuse(self._fleet, rid, ErrorCode.MALFORMED, str(exc))
            return
        if kind == "hello":
            self._on_hello(rid, header, frames)
            return
        node = self.nodes.get(self._node_by_rid.get(rid, -1))
        if node is None:
            self.stats["fleet_unregistered"] += 1
            self._send(self._fleet, rid, control("reregister", reason="unknown connection"))
            return
        node.last_seen = time.monotonic()
        node.bytes_in += sum(len(v) for v in views)
        if kind == "ping":
            self._to_node(node, control("pong"))
        elif kind == "credit_request":
            self._on_credit_request(node, header)
        elif kind == "message":
            self._on_reply(node, frames)
        elif kind == "get_bundle":
            if self.read_bundle is None:
                self._refuse(self._fleet, rid, ErrorCode.UNSUPPORTED, "this link serves no bundles")
            else:
                self.read_bundle(rid, header["hash"])
        elif kind == "bye":
            self._node_offline(node, f"node said bye: {header['reason']}")
        else:
            self.stats["fleet_unexpected_kind"] += 1
            self._refuse(
                self._fleet, rid, ErrorCode.UNSUPPORTED, f"kind {kind!r} not accepted here"
            )

    def _node_id_for(self, header: dict[str, Any], public_key: str | None) -> int | str:
        """The node id for a hello, or a reason to refuse it."""
        claimed = header.get("node_id")
        if public_key is not None:
            digest = hashlib.sha256(public_key.encode()).digest()
            derived = int.from_bytes(digest[:8], "little") & MAX_ID or 1
            if claimed is not None and claimed != derived:
                return f"node id {claimed} does not belong to this key (its id is {derived})"
            return derived
        if claimed is not None:
            return int(claimed) if claimed != 0 else "node id 0 is reserved for the link"
        while (new := secrets.randbits(63)) in self.nodes or new == 0:
            pass
        return new

    def _on_hello(self, rid: bytes, header: dict[str, Any], frames: list[zmq.Frame]) -> None:
        public_key = str(frames[0].get("User-Id")) if self.config.curve_enabled else None
        node_id = self._node_id_for(header, public_key)
        if isinstance(node_id, str):
            self.stats["hello_refused"] += 1
            log.warning("node_refused", peer=rid.hex(), reason=node_id)
            self._refuse(self._fleet, rid, ErrorCode.UNAUTHORIZED, node_id)
            return
        old = self.nodes.get(node_id)
        if old is not None and (old.routing_id != rid or not old.online):
            # The same node on a new connection: a restart. What it had lost.
            for entry in self._pending.pop_node(node_id):
                self._fail(entry, ErrorCode.NODE_UNAVAILABLE, f"node {node_id} restarted")
            self._grant(self.credit.drop_node(node_id))
            self._node_by_rid.pop(old.routing_id, None)
        now = time.monotonic()
        node = Node(
            node_id=node_id,
            routing_id=rid,
            node_config=header["node_config"],
            public_key=public_key,
            registered_at=time.time(),
            last_seen=now,
        )
        self.nodes[node_id] = node
        self._node_by_rid[rid] = node_id
        cfg = self.config
        self._to_node(
            node,
            control(
                "welcome",
                node_id=node_id,
                heartbeat_interval=cfg.heartbeat_interval,
                heartbeat_timeout=cfg.heartbeat_timeout,
                max_message_bytes=cfg.max_message_bytes,
                credit_threshold=cfg.credit_threshold,
            ),
        )
        self._answer_node_waiters(now)
        self.store.upsert_node(node_id, public_key, node.node_config, time.time(), online=True)
        self.store.add_event(
            "node_registered",
            time.time(),
            node_id=node_id,
            data={"node_config": node.node_config, "rejoined": old is not None},
        )
        log.info(
            "node_registered",
            node_id=node_id,
            node_config=node.node_config,
            rejoined=old is not None,
        )

    def _on_credit_request(self, node: Node, header: dict[str, Any]) -> None:
        reply_to, nbytes = header["reply_to"], header["nbytes"]
        entry = self._pending.get(reply_to)
        if entry is None or entry.node_id != node.node_id:
            self.stats["credit_refused"] += 1
            self._refuse(
                self._fleet,
                node.routing_id,
                ErrorCode.REJECTED,
                "no message awaits this reply",
                reply_to=reply_to,
            )
            return
        self._grant(
            self.credit.request(CreditRequest(reply_to, node.node_id, entry.run_id, nbytes))
        )

    def _on_reply(self, node: Node, frames: list[zmq.Frame]) -> None:
        try:
            reply = decode(frames, limits=self._limits)
        except DeserializationError as exc:
            self.stats["fleet_malformed"] += 1
            log.warning("reply_malformed", node_id=node.node_id, error=str(exc))
            self._refuse(self._fleet, node.routing_id, ErrorCode.MALFORMED, str(exc))
            return
        meta = reply.metadata
        entry = self._pending.get(meta.reply_to_message_id)
        problem = self._reply_problem(node, meta, entry)
        if problem is not None:
            self.stats[f"reply_dropped_{problem.split()[0]}"] += 1
            log.warning(
                "reply_dropped",
                node_id=node.node_id,
                reply_to=meta.reply_to_message_id,
                reason=problem,
            )
            self._grant(self.credit.release(meta.reply_to_message_id))
            return
        assert entry is not None  # noqa: S101 - _reply_problem checked it
        self._pending.pop(entry.message_id)
        self._remember(entry.message_id)
        run = self.runs.get(entry.run_id)
        if run is not None:
            run.replies += 1
        self.stats["replies"] += 1
        if entry.round_id:
            self.rounds.on_reply(entry, reply)
            return
        # The upload credit stays held until the ServerApp acks the reply: the link
        # never holds more replies than the credit window, however slow the app reads.
        if not self._to_app(entry.app_routing_id, [f.buffer for f in frames]):
            self._grant(self.credit.release(entry.message_id))

    def _reply_problem(self, node: Node, meta: Metadata, entry: Pending | None) -> str | None:
        if entry is None:
            known = meta.reply_to_message_id in self._recent
            return "duplicate reply" if known else "unknown or expired message"
        if entry.node_id != node.node_id or meta.src_node_id != node.node_id:
            return "wrong node for this message"
        if meta.run_id != entry.run_id or meta.dst_node_id != 0:
            return "wrong run or destination"
        return None

    def _remember(self, message_id: str) -> None:
        self._recent[message_id] = None
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    # --------------------------------------------------------------- app side

    def on_app(self, rid: bytes, frames: list[zmq.Frame]) -> None:
        try:
            kind, header, views = parse_envelope(frames, self._limits)
        except DeserializationError as exc:
            self.stats["app_malformed"] += 1
            log.warning("app_message_malformed", error=str(exc))
            self._refuse(self._app, rid, ErrorCode.MALFORMED, str(exc))
            return
        if kind == "app_hello":
            if self.draining:
                self._refuse(self._app, rid, ErrorCode.RUN_STOPPED, "the link is shutting down")
            else:
                self._on_app_hello(rid, header)
            return
        run = self.runs.get(self._run_by_app.get(rid, -1))
        if run is None:
            self._refuse(self._app, rid, ErrorCode.UNAUTHORIZED, "say app_hello first")
        elif kind == "ping":
            self._send(self._app, rid, control("pong"))
        elif kind == "get_nodes":
            deadline = time.monotonic() + min(float(header["timeout"]), 3600.0)
            self._node_waiters.append((rid, header["min_nodes"], deadline))
            self._answer_node_waiters(time.monotonic())
        elif kind == "report":
            self._on_report(run, header)
        elif kind == "ack":
            for message_id in header["message_ids"]:
                if isinstance(message_id, str):
                    self._grant(self.credit.release(message_id))
        elif kind == "push":
            self._on_push(rid, run, header, views)
        elif kind == "app_bye":
            self._end_run(run, RunStatus.FINISHED)
        else:
            self._refuse(self._app, rid, ErrorCode.UNSUPPORTED, f"kind {kind!r} not accepted here")

    def _answer_node_waiters(self, now: float) -> None:
        if not self._node_waiters:
            return
        online = sorted(n.node_id for n in self.nodes.values() if n.online)
        waiting = []
        for rid, min_nodes, deadline in self._node_waiters:
            if len(online) >= min_nodes or now >= deadline:
                self._send(self._app, rid, control("nodes", node_ids=online))
            else:
                waiting.append((rid, min_nodes, deadline))
        self._node_waiters = waiting

    def _on_report(self, run: Run, header: dict[str, Any]) -> None:
        try:
            metrics = dict(MetricRecord(header["metrics"]))
        except (TypeError, ValueError) as exc:
            self._refuse(self._app, run.app_routing_id or b"", ErrorCode.MALFORMED, str(exc))
            return
        at = time.time()
        self.store.upsert_round(run.run_id, header["round"], metrics, at)
        run.rounds_done = max(run.rounds_done, header["round"])
        self.store.update_run(run.run_id, rounds_done=run.rounds_done)
        log.info("round_reported", run_id=run.run_id, round=header["round"], **metrics)

    def _on_app_hello(self, rid: bytes, header: dict[str, Any]) -> None:
        run_id = header.get("run_id")
        if run_id is None:
            run_id = self.create_run(dict(header["run_config"]), "", "").run_id
        elif run_id not in self.runs:
            self._refuse(self._app, rid, ErrorCode.UNAUTHORIZED, f"unknown run {run_id}")
            return
        elif self.runs[run_id].status != RunStatus.RUNNING:
            self._refuse(self._app, rid, ErrorCode.RUN_STOPPED, f"run {run_id} is over")
            return
        run = self.runs[run_id]
        run.app_routing_id = rid
        self._run_by_app[rid] = run_id
        self._send(self._app, rid, control("app_welcome", run_id=run_id, run_config=run.run_config))

    def _on_push(
        self, rid: bytes, run: Run, header: dict[str, Any], views: list[memoryview]
    ) -> None:
        try:
            template = decode_metadata(header["metadata"])
            payload = views[1:]
            arrays = parse_payload(payload, self._limits) if payload else {}
            content = decode_content(header["content"], arrays, self._limits)
            targets = _targets(header["dst"])
            spec = (
                None
                if header.get("aggregate") is None
                else AggregateSpec.from_wire(header["aggregate"])
            )
        except DeserializationError as exc:
            self.stats["app_malformed"] += 1
            log.warning("push_malformed", run_id=run.run_id, error=str(exc))
            self._refuse(self._app, rid, ErrorCode.MALFORMED, str(exc))
            return
        if template.run_id != run.run_id:
            self._refuse(
                self._app, rid, ErrorCode.UNAUTHORIZED, "messages must carry this run's id"
            )
            return
        round_id = ""
        if spec is not None:
            try:
                self.rounds.begin(spec, run.run_id, rid, template, content, len(targets))
            except DeserializationError as exc:
                self._refuse(self._app, rid, ErrorCode.MALFORMED, str(exc))
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
        node = self.nodes.get(entry.node_id)
        if self.draining:
            self._fail(entry, ErrorCode.RUN_STOPPED, "the link is shutting down")
        elif entry.message_id in self._pending or entry.message_id in self._recent:
            self._fail(entry, ErrorCode.REJECTED, "duplicate message id")
        elif node is None or not node.online:
            self._fail(entry, ErrorCode.NODE_UNAVAILABLE, f"node {entry.node_id} is not online")
        elif entry.expires_at <= time.time():
            self._fail(entry, ErrorCode.MESSAGE_EXPIRED, "the message expired before delivery")
        else:
            if run.run_id not in node.informed_runs:
                info = control("run", run_id=run.run_id, run_config=run.run_config,
                               bundle=run.bundle_hash)  # fmt: skip
                if not self._to_node(node, info):
                    self._fail(
                        entry, ErrorCode.NODE_UNAVAILABLE, f"node {node.node_id} unreachable"
                    )
                    return
                node.informed_runs.add(run.run_id)
            self._pending.add(entry)
            if self._to_node(node, frames):
                run.messages_sent += 1
                run.nodes.add(node.node_id)
                node.bytes_out += frames_nbytes(frames)

    def create_run(self, run_config: dict[str, Any], app: str, bundle_hash: str) -> Run:
        """Start a run (for an in-process ServerApp, or one the exec service starts)."""
        run_id = self.store.next_run_id()
        run = Run(run_id, run_config, None, app=app, bundle_hash=bundle_hash,
                  exec_done=not bundle_hash)  # fmt: skip
        self.runs[run_id] = run
        self.store.create_run(run_id, run_config, app, run.started_at)
        self.store.add_event("run_started", time.time(), run_id=run_id, data={"app": app})
        log.info("run_started", run_id=run_id, app=app)
        return run

    def stop_run(self, run: Run, reason: str) -> None:
        """End a run now: its messages are dropped and its nodes told (``fedzero stop``)."""
        self._end_run(run, RunStatus.STOPPED, reason)

    def on_exec(self, outcome: tuple[Any, ...]) -> None:
        """A run's ServerApp process exited: record the run's outcome."""
        if outcome[0] == "bundle":
            _, rid, bundle_hash, data = outcome
            if data is None:
                self._refuse(self._fleet, rid, ErrorCode.REJECTED, f"no bundle {bundle_hash[:12]}")
            else:
                self._send(self._fleet, rid, [*control("bundle", hash=bundle_hash), data])
            return
        if outcome[0] != "exited":
            return
        _, run_id, code, error, traceback_text = outcome
        run = self.runs.get(run_id)
        if run is None:
            return
        run.exec_done = True
        run.ended_seq = self.store.submitted  # its last log lines are queued before this
        if run.status == RunStatus.RUNNING:
            self._end_run(run, RunStatus.FINISHED if code == 0 else RunStatus.FAILED, error,
                          traceback_text)  # fmt: skip
        elif code != 0 and run.status == RunStatus.FINISHED:  # it said bye, then failed
            run.status, run.error = RunStatus.FAILED, error
            self.store.end_run(run_id, str(RunStatus.FAILED), time.time(), error=error,
                               traceback=traceback_text)  # fmt: skip

    def _end_run(
        self, run: Run, status: RunStatus, error: str = "", traceback_text: str = ""
    ) -> None:
        run.status = status
        run.ended_at = time.time()
        for entry in self._pending.pop_run(run.run_id):
            self.credit.release(entry.message_id)
        self.rounds.drop_run(run.run_id)
        self._grant(self.credit.drop_run(run.run_id))
        for node in self.nodes.values():
            if run.run_id in node.informed_runs and node.online:
                node.informed_runs.discard(run.run_id)
                self._to_node(node, control("run_end", run_id=run.run_id))
        if run.app_routing_id is not None:
            self._run_by_app.pop(run.app_routing_id, None)
        self.store.update_run(run.run_id, messages_sent=run.messages_sent, replies=run.replies,
                              failures=run.failures, nodes=sorted(run.nodes))  # fmt: skip
        run.error = error
        self.store.end_run(run.run_id, str(status), run.ended_at, error=error,
                           traceback=traceback_text)  # fmt: skip
        self.store.add_event(
            "run_ended",
            run.ended_at,
            run_id=run.run_id,
            data={"status": str(status), "error": error},
        )
        run.ended_seq = self.store.submitted
        log.info(
            "run_ended",
            run_id=run.run_id,
            status=str(status),
            messages=run.messages_sent,
            replies=run.replies,
            failures=run.failures,
            secs=round(run.ended_at - run.started_at, 3),
        )


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
