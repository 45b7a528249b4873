"""What the fleet side, the app side and the run lifecycle share: state and replies.

:class:`RoutingCore` holds the router's state (nodes, runs, messages awaiting
replies, upload credit, aggregated rounds) and the primitives every side uses
to answer a peer: send, refuse, fail a pending message, grant credit, take a
node offline. It is driven by the link's IO thread alone (no locks).
"""

from __future__ import annotations

import errno
import time
from collections import Counter, OrderedDict
from typing import Any, Final

import structlog
import zmq

from fedzero.core import DecodeLimits, Error, ErrorCode, Message, Metadata, encode
from fedzero.core.wire import control, new_message_id

from .._config import LinkConfig
from .._state import Node, Pending, PendingTable, Run
from ..rounds import FoldWorker, RoundBook
from ..store import StoreWriter
from ._credit import CreditRequest, CreditWindow
from ._liveness import Admission, Liveness

log = structlog.get_logger(__name__)

_RECENT: Final = 65_536  # answered message ids remembered to name duplicates
_SNDMORE: Final = int(zmq.SNDMORE)


class RoutingCore:
    """The router's state, and how it answers peers (IO thread only).

    Built by :class:`~._router.Router` from its own arguments.
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
        self.fleet = fleet
        self.app = app
        self.stats = stats
        self.store = store
        self.limits = DecodeLimits()
        self.nodes: dict[int, Node] = {}
        self.node_by_rid: dict[bytes, int] = {}
        self.online = 0
        """How many nodes are online (kept as they come and go: no count over the registry)."""
        self.liveness = Liveness(
            self.nodes, config.heartbeat_timeout, recheck=config.heartbeat_interval / 2
        )
        self.admission = Admission()
        self.traffic_dirty: set[int] = set()
        """Nodes whose byte counters moved (not by heartbeats) since they were last recorded."""
        self.runs: dict[int, Run] = {}
        self.run_by_app: dict[bytes, int] = {}
        self.pending = PendingTable()
        self.recent: OrderedDict[str, None] = OrderedDict()
        """Message ids answered lately (a second reply is a duplicate, not unknown)."""
        self.credit = CreditWindow(config.max_concurrent_uploads, config.max_upload_bytes)
        self.draining = False
        """Set when the link drains: new runs and pushes are refused."""
        checkpoints = None if config.state_dir is None else config.state_dir / "checkpoints"
        self.rounds = RoundBook(
            worker=worker,
            store=store,
            stats=stats,
            pending=self.pending,
            release=self.release,
            to_app=self.to_app,
            counters=self._counters,
            checkpoint_dir=checkpoints,
            retention=config.checkpoint_retention,
        )

    def _counters(self, run_id: int) -> dict[str, int]:
        """The traffic counters of ``run_id`` (none if it is gone)."""
        run = self.runs.get(run_id)
        return {} if run is None else run.counters()

    # --------------------------------------------------------------- sending

    def send(self, sock: zmq.Socket[bytes], rid: bytes, frames: list[Any]) -> bool:
        """Send to a peer; False if it is gone (ROUTER_MANDATORY says so)."""
        # send_multipart's per-frame enum arithmetic (SNDMORE | flags) is a measurable
        # share of the IO loop with 10,000 nodes: plain ints, the same frames.
        try:
            sock.send(rid, _SNDMORE, copy=False)
            for frame in frames[:-1]:
                sock.send(frame, _SNDMORE, copy=False)
            sock.send(frames[-1], 0, copy=False)
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            return False
        return True

    def to_node(self, node: Node, frames: list[Any]) -> bool:
        """Send to a node; an unreachable node goes offline (and False is returned)."""
        if self.send(self.fleet, node.routing_id, frames):
            return True
        self.node_offline(node, "unreachable")
        return False

    def to_app(self, rid: bytes, frames: list[Any]) -> bool:
        """Send to a ServerApp; False (and a warning) if it is gone."""
        if self.send(self.app, rid, frames):
            return True
        self.stats["app_unreachable"] += 1
        log.warning("server_app_unreachable", run_id=self.run_by_app.get(rid))
        return False

    def refuse(
        self, sock: zmq.Socket[bytes], rid: bytes, code: ErrorCode, reason: str, **extra: Any
    ) -> None:
        """Answer a peer's message with ``refused``."""
        self.send(sock, rid, control("refused", code=int(code), reason=reason, **extra))

    # --------------------------------------------------------- messages, credit

    def fail(self, entry: Pending, code: ErrorCode, reason: str) -> None:
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
        error = Message.from_parts(meta, None, Error(code, reason))
        self.to_app(entry.app_routing_id, encode(error))

    def grant(self, granted: list[CreditRequest]) -> None:
        """Tell each node whose upload was just admitted."""
        for req in granted:
            node = self.nodes.get(req.node_id)
            if node is not None and node.online:
                self.to_node(node, control("credit_grant", reply_to=req.reply_to))

    def release(self, message_id: str) -> None:
        """Release the upload credit of ``message_id``'s reply; grant waiting uploads."""
        self.grant(self.credit.release(message_id))

    def remember(self, message_id: str) -> None:
        """Remember an answered message id (bounded)."""
        self.recent[message_id] = None
        if len(self.recent) > _RECENT:
            self.recent.popitem(last=False)

    def expire(self, now: float) -> None:
        """Fail every message whose TTL ran out by ``now`` (wall clock)."""
        for entry in self.pending.pop_expired(now):
            self.credit.release(entry.message_id)
            self.fail(entry, ErrorCode.MESSAGE_EXPIRED, "the message's TTL ran out before a reply")

    # ------------------------------------------------------------------ nodes

    def node_offline(self, node: Node, reason: str) -> None:
        """Mark ``node`` offline; its pending messages fail now, not at their TTL."""
        if not node.online:
            return
        node.online = False
        self.online -= 1
        node.offline_since = time.monotonic()
        self.node_by_rid.pop(node.routing_id, None)
        lost = self.pending.pop_node(node.node_id)
        self.traffic_dirty.discard(node.node_id)
        self.store.update_node_traffic(node.node_id, node.bytes_in, node.bytes_out, time.time())
        self.store.set_node_online(node.node_id, False, time.time())
        self.store.add_event(
            "node_offline", time.time(), node_id=node.node_id, data={"reason": reason}
        )
        log.warning("node_offline", node_id=node.node_id, reason=reason, failed_messages=len(lost))
        for entry in lost:
            self.fail(
                entry, ErrorCode.NODE_UNAVAILABLE, f"node {node.node_id} went offline: {reason}"
            )
        self.grant(self.credit.drop_node(node.node_id))
