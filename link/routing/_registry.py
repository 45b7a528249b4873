"""Who a node is: ``hello`` and ``welcome``, one connection per id, revoked keys, forgetting.

A node id belongs to one connection at a time. A ``hello`` for an id that is
online on another connection is accepted only with the session token the link
gave that registration in ``welcome`` (a node that reconnected proves it is the
same node), or with CURVE, where the id is derived from the key the handshake
authenticated. Anyone else is refused and the online node keeps its work.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import structlog
import zmq
import zmq.auth

from fedzero.core import ErrorCode
from fedzero.core.wire import MAX_ID, control

from .._state import Node, same_secret
from ._core import RoutingCore

log = structlog.get_logger(__name__)

HELLO_MAX_BYTES: Final = 64 * 1024
"""Largest ``hello`` (and anything else from a connection that is not registered)."""

FORGET_HEARTBEATS: Final = 100
"""A node offline for this many heartbeat timeouts is dropped from the registry."""


def node_id_of_key(public_key: str) -> int:
    """The node id of a CURVE public key (Z85 text): SHA-256, first 8 bytes LE, 63 bits."""
    digest = hashlib.sha256(public_key.encode()).digest()
    return int.from_bytes(digest[:8], "little") & MAX_ID or 1


def allowed_keys(folder: Path | None) -> set[str] | None:
    """The Z85 public keys allowed in ``folder`` (None: no allow-list to apply)."""
    if folder is None or not folder.is_dir():
        return None
    return {key.decode("ascii") for key in zmq.auth.load_certificates(str(folder))}


class Registration:
    """Registers nodes (IO thread only).

    Args:
        core: the router's shared state.
        on_registered: called with the monotonic time after a node registers.
    """

    def __init__(self, core: RoutingCore, on_registered: Callable[[float], None]) -> None:
        self._core = core
        self._on_registered = on_registered
        self.registered = 0
        """Registrations since the last ``nodes_registered`` log line."""
        curve = core.config.curve_enabled
        self._allowed = allowed_keys(core.config.allowed_keys_dir) if curve else None

    def on_hello(self, rid: bytes, header: dict[str, Any], frames: list[zmq.Frame]) -> None:
        """Register the node on connection ``rid``, or refuse it (and say why)."""
        core = self._core
        wait = core.admission.admit(time.monotonic())
        if wait:  # over the registration budget: come back later, spread out
            core.stats["hello_busy"] += 1
            reason = f"busy registering nodes: retry after {wait} s"
            core.refuse(core.fleet, rid, ErrorCode.OVERLOADED, reason, retry_after=wait)
            return
        public_key = str(frames[0].get("User-Id")) if core.config.curve_enabled else None
        node_id = self._node_id_for(header, public_key)
        old = core.nodes.get(node_id) if isinstance(node_id, int) else None
        if isinstance(node_id, int) and old is not None:
            problem = self._taken(old, rid, header, public_key)
            node_id = problem or node_id
        if isinstance(node_id, str):
            core.stats["hello_refused"] += 1
            log.warning("node_refused", peer=rid.hex(), reason=node_id)
            core.refuse(core.fleet, rid, ErrorCode.UNAUTHORIZED, node_id)
            return
        if old is not None and old.routing_id == rid and old.online:
            old.node_config = header["node_config"]  # hello again on its own connection:
            self._welcome(old)  # nothing is lost
            self._record_registered(old, rejoined=True)
            return
        if old is not None:
            # The same node on a new connection (it restarted or reconnected): what
            # was sent on the old one is lost with it.
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
        if old is not None and old.routing_id == rid:  # what it never read is still queued
            node.unanswered, node.backlog = old.unanswered, old.backlog
        if old is None or not old.online:
            core.online += 1
        core.nodes[node_id] = node
        core.node_by_rid[rid] = node_id
        core.liveness.watch(node)
        self._welcome(node)
        self._on_registered(now)
        self._record_registered(node, rejoined=old is not None)

    def keys_reloaded(self) -> None:
        """The allowed keys were re-read (SIGHUP): cut off nodes whose key was revoked."""
        core = self._core
        if not core.config.curve_enabled:
            return
        self._allowed = allowed_keys(core.config.allowed_keys_dir)
        for node in list(core.nodes.values()):
            if node.online and not self._key_allowed(node.public_key):
                core.stats["nodes_revoked"] += 1
                core.node_offline(node, "key revoked")
                reason = "this node's key was revoked"
                core.refuse(core.fleet, node.routing_id, ErrorCode.UNAUTHORIZED, reason)

    def forget_offline(self, now: float) -> None:
        """Drop nodes offline for long from the registry (the store keeps their rows)."""
        core = self._core
        if core.online == len(core.nodes):  # none offline: nothing to look for
            return
        horizon = FORGET_HEARTBEATS * core.config.heartbeat_timeout
        gone = [n for n in core.nodes.values() if not n.online and now - n.offline_since > horizon]
        for node in gone:
            del core.nodes[node.node_id]
        if gone:
            log.info("nodes_forgotten", count=len(gone), offline_for_secs=horizon)

    # ---------------------------------------------------------------- checks

    def _key_allowed(self, public_key: str | None) -> bool:
        return self._allowed is None or public_key in self._allowed

    def _node_id_for(self, header: dict[str, Any], public_key: str | None) -> int | str:
        """The node id for a hello, or a reason to refuse it."""
        claimed = header.get("node_id")
        if public_key is not None:
            if not self._key_allowed(public_key):
                return "this node's key is not (or no longer) allowed"
            derived = node_id_of_key(public_key)
            if claimed is not None and claimed != derived:
                return f"node id {claimed} does not belong to this key (its id is {derived})"
            return derived
        if claimed is not None:
            return int(claimed) if claimed != 0 else "node id 0 is reserved for the link"
        while (new := secrets.randbits(63)) in self._core.nodes or new == 0:
            pass
        return new

    def _taken(
        self, old: Node, rid: bytes, header: dict[str, Any], public_key: str | None
    ) -> str | None:
        """Why ``old``'s id may not move to connection ``rid`` (None: it may)."""
        if not old.online or old.routing_id == rid:
            return None
        if public_key is not None and public_key == old.public_key:
            return None  # CURVE: the handshake proved the key, and the id is the key's
        if same_secret(header.get("session"), old.session):
            return None
        return (
            f"node {old.node_id} is online on another connection; registering it again "
            "needs the session token of its welcome"
        )

    def _welcome(self, node: Node) -> None:
        cfg = self._core.config
        welcome = control(
            "welcome",
            node_id=node.node_id,
            heartbeat_interval=cfg.heartbeat_interval,
            heartbeat_timeout=cfg.heartbeat_timeout,
            max_message_bytes=cfg.max_message_bytes,
            credit_threshold=cfg.credit_threshold,
            session=node.session,
        )
        self._core.to_node(node, welcome)

    def _record_registered(self, node: Node, rejoined: bool) -> None:
        store, config = self._core.store, node.node_config
        store.upsert_node(node.node_id, node.public_key, config, time.time(), online=True)
        data = {"node_config": config, "rejoined": rejoined}
        store.add_event("node_registered", time.time(), node_id=node.node_id, data=data)
        self.registered += 1  # logged once per tick (log_registered), not once per node

    def log_registered(self) -> None:
        """One line for the registrations since the last one (not a line per node)."""
        if self.registered:
            log.info("nodes_registered", count=self.registered, online=self._core.online)
            self.registered = 0
