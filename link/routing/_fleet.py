"""The fleet side of the router: what nodes say, and how long they stay online.

Nodes register with ``hello`` (:mod:`._registry`), ping, ask for upload
credit, fetch bundles, reply to messages (:mod:`._replies`) and say ``bye``.
What a peer may make the link parse is bounded before parsing: a connection
that is not registered sends at most ``HELLO_MAX_BYTES``, a node at most the
credit threshold unless it holds a grant for more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import structlog
import zmq

from fedzero.core import DeserializationError, ErrorCode
from fedzero.core.wire import ENDPOINT_KINDS, control, parse_envelope

from .._state import Node
from ._core import RoutingCore
from ._credit import CreditRequest
from ._registry import HELLO_MAX_BYTES, Registration
from ._replies import ReplyIntake

log = structlog.get_logger(__name__)

_PING: Final = control("ping")[0]
"""A ping as fedzero's nodes write it: answered without parsing (any other spelling is parsed)."""
_PONG: Final = control("pong")

_WRONG_ENDPOINT = {
    "control": "this is the link's fleet endpoint (nodes); control requests (fedzero run, "
    "ls, log, stop, nodes) go to its control endpoint",
    "app": "this is the link's fleet endpoint (nodes); ServerApps connect to its app endpoint",
}


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
        self.registration = Registration(core, on_registered)
        self._replies = ReplyIntake(core)

    def on_message(self, rid: bytes, frames: list[zmq.Frame]) -> None:
        """Handle one message from the node on connection ``rid``."""
        core = self._core
        core.stats["fleet_in"] += 1
        node = core.nodes.get(core.node_by_rid.get(rid, -1))
        if node is not None:  # any message is a heartbeat
            node.last_seen = time.monotonic()
        if (
            node is not None
            and len(frames) == 1
            and len(frames[0]) == len(_PING)
            and frames[0].bytes == _PING
        ):  # the hot path: a dict lookup, a compare and one send
            node.bytes_in += len(_PING)
            core.to_node(node, _PONG)
            return
        nbytes = sum(len(f) for f in frames)
        cap = self._size_cap(node)
        if len(frames[0]) > cap:  # checked before any parsing
            core.stats["fleet_oversize"] += 1
            reason = f"frame 0 of {len(frames[0])} bytes exceeds this connection's cap of {cap}"
            core.refuse(core.fleet, rid, ErrorCode.OVERLOADED, reason)
            return
        try:
            kind, header, _ = parse_envelope(frames, core.limits)
        except DeserializationError as exc:
            core.stats["fleet_malformed"] += 1
            log.warning("fleet_message_malformed", peer=rid.hex(), error=str(exc))
            core.refuse(core.fleet, rid, ErrorCode.MALFORMED, str(exc))
            return
        if kind not in ENDPOINT_KINDS["fleet"]:
            self._wrong_kind(rid, kind)
            return
        if kind == "hello":
            if nbytes > HELLO_MAX_BYTES:
                self._oversize(rid, kind, nbytes, HELLO_MAX_BYTES)
            else:
                self.registration.on_hello(rid, header, frames)
            return
        if node is None:
            core.stats["fleet_unregistered"] += 1
            core.send(core.fleet, rid, control("reregister", reason="unknown connection"))
            return
        if nbytes > cap and kind != "message":  # a reply is measured against its grant
            self._oversize(rid, kind, nbytes, cap)
            return
        node.bytes_in += nbytes
        if kind == "ping":
            core.to_node(node, _PONG)
            return
        core.traffic_dirty.add(node.node_id)
        if kind == "credit_request":
            self._on_credit_request(node, header)
        elif kind == "message":
            self._replies.on_reply(node, frames, header)
        elif kind == "get_bundle":
            if self._read_bundle is None:
                core.refuse(core.fleet, rid, ErrorCode.UNSUPPORTED, "this link serves no bundles")
            else:
                self._read_bundle(rid, header["hash"])
        elif kind == "bye":
            core.node_offline(node, f"node said bye: {header['reason']}")

    def _size_cap(self, node: Node | None) -> int:
        """Bytes this connection may send in one message: more only under a grant."""
        if node is None:
            return HELLO_MAX_BYTES
        threshold = max(self._core.config.credit_threshold, HELLO_MAX_BYTES)
        return max(threshold, self._core.credit.allowance(node.node_id))

    def _oversize(self, rid: bytes, kind: str, nbytes: int, cap: int) -> None:
        core = self._core
        core.stats["fleet_oversize"] += 1
        reason = f"a {kind} of {nbytes} bytes exceeds this connection's cap of {cap}"
        core.refuse(core.fleet, rid, ErrorCode.OVERLOADED, reason)

    def _wrong_kind(self, rid: bytes, kind: str) -> None:
        core = self._core
        core.stats["fleet_unexpected_kind"] += 1
        endpoint = next((e for e, kinds in ENDPOINT_KINDS.items() if kind in kinds), "")
        reason = _WRONG_ENDPOINT.get(endpoint, f"kind {kind!r:.40} is not accepted here")
        core.refuse(core.fleet, rid, ErrorCode.UNSUPPORTED, reason)

    def send_bundle(self, rid: bytes, bundle_hash: str, data: bytes | None) -> None:
        """Answer a node's ``get_bundle`` with the bundle read (None: there is none)."""
        core = self._core
        if data is None:
            core.refuse(core.fleet, rid, ErrorCode.REJECTED, f"no bundle {bundle_hash[:12]}")
        else:
            core.send(core.fleet, rid, [*control("bundle", hash=bundle_hash), data])

    def check_liveness(self, now: float) -> None:
        """Take nodes silent for longer than the heartbeat timeout offline (due timers only)."""
        self._core.liveness.check(now, self._core.node_offline)

    def record_traffic(self) -> None:
        """Record the byte counters and last-seen time of the nodes that moved messages.

        Heartbeats alone do not make a node's row change: an idle fleet of N
        nodes costs no N updates every few seconds.
        """
        core = self._core
        wall = time.time()
        for node_id in core.traffic_dirty:
            node = core.nodes.get(node_id)
            if node is not None and node.online:
                core.store.update_node_traffic(node_id, node.bytes_in, node.bytes_out, wall)
        core.traffic_dirty.clear()

    # ---------------------------------------------------------------- replies

    def _on_credit_request(self, node: Node, header: dict[str, Any]) -> None:
        core = self._core
        reply_to, nbytes = header["reply_to"], header["nbytes"]
        node.answered(reply_to)  # it read that task: its reply waits for credit, not in a queue
        entry = core.pending.get(reply_to)
        if entry is None or entry.node_id != node.node_id:
            core.stats["credit_refused"] += 1
            reason = "no message awaits this reply"
            code = ErrorCode.REJECTED
            core.refuse(core.fleet, node.routing_id, code, reason, reply_to=reply_to)
            return
        core.grant(core.credit.request(CreditRequest(reply_to, node.node_id, entry.run_id, nbytes)))
