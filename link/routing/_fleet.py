"""The fleet side of the router: what nodes say, and how long they stay online.

Nodes register with ``hello`` (the link answers ``welcome`` and the liveness
settings), ping, ask for upload credit, fetch bundles, reply to messages and
say ``bye``. A reply is checked against the message it answers before it goes
to its round (link-side aggregation) or to its ServerApp.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import structlog
import zmq

from fedzero.core import DeserializationError, ErrorCode, Metadata, decode
from fedzero.core.wire import MAX_ID, control, parse_envelope

from .._state import Node, Pending
from ._core import RoutingCore
from ._credit import CreditRequest

log = structlog.get_logger(__name__)


class FleetSide:
    """Handles messages from nodes (IO thread only).

    Args:
        core: the router's shared state.
        read_bundle: reads a stored bundle for a node (the exec service's);
            None when the link serves no bundles.
        on_registered: called with the monotonic time after a node registers
            (ServerApps may be waiting for nodes).
    """

    def __init__(
        self,
        core: RoutingCore,
        read_bundle: Callable[[bytes, str], None] | None,
        on_registered: Callable[[float], None],
    ) -> None:
        self._core = core
        self._read_bundle = read_bundle
        self._on_registered = on_registered

    def on_message(self, rid: bytes, frames: list[zmq.Frame]) -> None:
        """Handle one message from the node on connection ``rid``."""
        core = self._core
        core.stats["fleet_in"] += 1
        try:
            kind, header, views = parse_envelope(frames, core.limits)
        except DeserializationError as exc:
            core.stats["fleet_malformed"] += 1
            log.warning("fleet_message_malformed", peer=rid.hex(), error=str(exc))
            core.refuse(core.fleet, rid, ErrorCode.MALFORMED, str(exc))
            return
        if kind == "hello":
            self._on_hello(rid, header, frames)
            return
        node = core.nodes.get(core.node_by_rid.get(rid, -1))
        if node is None:
            core.stats["fleet_unregistered"] += 1
            core.send(core.fleet, rid, control("reregister", reason="unknown connection"))
            return
        node.last_seen = time.monotonic()
        node.bytes_in += sum(len(v) for v in views)
        if kind == "ping":
            core.to_node(node, control("pong"))
        elif kind == "credit_request":
            self._on_credit_request(node, header)
        elif kind == "message":
            self._on_reply(node, frames)
        elif kind == "get_bundle":
            if self._read_bundle is None:
                core.refuse(core.fleet, rid, ErrorCode.UNSUPPORTED, "this link serves no bundles")
            else:
                self._read_bundle(rid, header["hash"])
        elif kind == "bye":
            core.node_offline(node, f"node said bye: {header['reason']}")
        else:
            core.stats["fleet_unexpected_kind"] += 1
            reason = f"kind {kind!r} not accepted here"
            core.refuse(core.fleet, rid, ErrorCode.UNSUPPORTED, reason)

    def send_bundle(self, rid: bytes, bundle_hash: str, data: bytes | None) -> None:
        """Answer a node's ``get_bundle`` with the bundle read (None: there is none)."""
        core = self._core
        if data is None:
            core.refuse(core.fleet, rid, ErrorCode.REJECTED, f"no bundle {bundle_hash[:12]}")
        else:
            core.send(core.fleet, rid, [*control("bundle", hash=bundle_hash), data])

    def check_liveness(self, now: float) -> None:
        """Take nodes silent for longer than the heartbeat timeout offline."""
        budget = self._core.config.heartbeat_timeout
        nodes = self._core.nodes.values()
        for node in [n for n in nodes if n.online and now - n.last_seen > budget]:
            self._core.node_offline(node, f"no heartbeat for {now - node.last_seen:.1f}s")

    def record_traffic(self) -> None:
        """Record every online node's byte counters and last-seen time."""
        wall = time.time()
        for node in self._core.nodes.values():
            if node.online:
                self._core.store.update_node_traffic(
                    node.node_id, node.bytes_in, node.bytes_out, wall
                )

    # ------------------------------------------------------------- registration

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
        while (new := secrets.randbits(63)) in self._core.nodes or new == 0:
            pass
        return new

    def _on_hello(self, rid: bytes, header: dict[str, Any], frames: list[zmq.Frame]) -> None:
        core = self._core
        public_key = str(frames[0].get("User-Id")) if core.config.curve_enabled else None
        node_id = self._node_id_for(header, public_key)
        if isinstance(node_id, str):
            core.stats["hello_refused"] += 1
            log.warning("node_refused", peer=rid.hex(), reason=node_id)
            core.refuse(core.fleet, rid, ErrorCode.UNAUTHORIZED, node_id)
            return
        old = core.nodes.get(node_id)
        if old is not None and (old.routing_id != rid or not old.online):
            # The same node on a new connection: a restart. What it had lost.
            for entry in core.pending.pop_node(node_id):
                core.fail(entry, ErrorCode.NODE_UNAVAILABLE, f"node {node_id} restarted")
            core.grant(core.credit.drop_node(node_id))
            core.node_by_rid.pop(old.routing_id, None)
        now = time.monotonic()
        node = Node(
            node_id=node_id,
            routing_id=rid,
            node_config=header["node_config"],
            public_key=public_key,
            registered_at=time.time(),
            last_seen=now,
        )
        core.nodes[node_id] = node
        core.node_by_rid[rid] = node_id
        self._welcome(node)
        self._on_registered(now)
        self._record_registered(node, rejoined=old is not None)

    def _welcome(self, node: Node) -> None:
        cfg = self._core.config
        welcome = control(
            "welcome",
            node_id=node.node_id,
            heartbeat_interval=cfg.heartbeat_interval,
            heartbeat_timeout=cfg.heartbeat_timeout,
            max_message_bytes=cfg.max_message_bytes,
            credit_threshold=cfg.credit_threshold,
        )
        self._core.to_node(node, welcome)

    def _record_registered(self, node: Node, rejoined: bool) -> None:
        store, config = self._core.store, node.node_config
        store.upsert_node(node.node_id, node.public_key, config, time.time(), online=True)
        data = {"node_config": config, "rejoined": rejoined}
        store.add_event("node_registered", time.time(), node_id=node.node_id, data=data)
        log.info("node_registered", node_id=node.node_id, node_config=config, rejoined=rejoined)

    # ---------------------------------------------------------------- replies

    def _on_credit_request(self, node: Node, header: dict[str, Any]) -> None:
        core = self._core
        reply_to, nbytes = header["reply_to"], header["nbytes"]
        entry = core.pending.get(reply_to)
        if entry is None or entry.node_id != node.node_id:
            core.stats["credit_refused"] += 1
            reason = "no message awaits this reply"
            code = ErrorCode.REJECTED
            core.refuse(core.fleet, node.routing_id, code, reason, reply_to=reply_to)
            return
        core.grant(core.credit.request(CreditRequest(reply_to, node.node_id, entry.run_id, nbytes)))

    def _on_reply(self, node: Node, frames: list[zmq.Frame]) -> None:
        core = self._core
        try:
            reply = decode(frames, limits=core.limits)
        except DeserializationError as exc:
            core.stats["fleet_malformed"] += 1
            log.warning("reply_malformed", node_id=node.node_id, error=str(exc))
            core.refuse(core.fleet, node.routing_id, ErrorCode.MALFORMED, str(exc))
            return
        meta = reply.metadata
        entry = self._awaited(node, meta)
        if isinstance(entry, str):
            core.stats[f"reply_dropped_{entry.split()[0]}"] += 1
            log.warning(
                "reply_dropped",
                node_id=node.node_id,
                reply_to=meta.reply_to_message_id,
                reason=entry,
            )
            core.release(meta.reply_to_message_id)
            return
        core.pending.pop(entry.message_id)
        core.remember(entry.message_id)
        run = core.runs.get(entry.run_id)
        if run is not None:
            run.replies += 1
        core.stats["replies"] += 1
        if entry.round_id:
            core.rounds.on_reply(entry, reply)
            return
        # The upload credit stays held until the ServerApp acks the reply: the link
        # never holds more replies than the credit window, however slow the app reads.
        if not core.to_app(entry.app_routing_id, [f.buffer for f in frames]):
            core.release(entry.message_id)

    def _awaited(self, node: Node, meta: Metadata) -> Pending | str:
        """The pending message this reply answers, or why the reply is dropped."""
        entry = self._core.pending.get(meta.reply_to_message_id)
        if entry is None:
            known = meta.reply_to_message_id in self._core.recent
            return "duplicate reply" if known else "unknown or expired message"
        if entry.node_id != node.node_id or meta.src_node_id != node.node_id:
            return "wrong node for this message"
        if meta.run_id != entry.run_id or meta.dst_node_id != 0:
            return "wrong run or destination"
        return entry
