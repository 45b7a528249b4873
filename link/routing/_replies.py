"""A node's reply, checked before it goes anywhere: its task, its credit, its metadata, its weight.

Every reply the link does not take is answered with ``refused`` naming it
(``reply_to``), so a node knows which reply was dropped and why. A reply that
answers a pending task of its node but breaks a rule (sent without upload
credit, metadata that does not match the task, a missing or unusable weight)
also fails that task at once with ``REJECTED``: nothing is left waiting for
the TTL, and nothing unusable reaches an accumulator.
"""

from __future__ import annotations

import math
import time
from typing import Any, Final

import structlog
import zmq

from fedzero.core import DeserializationError, ErrorCode, Message, Metadata
from fedzero.core.wire import as_memoryview, decode_parsed

from .._state import Node, Pending
from ..rounds import AggregateSpec
from ._core import RoutingCore

log = structlog.get_logger(__name__)

CLOCK_SKEW: Final = 300.0
"""Seconds a node's clock may differ from the link's (reply ``created_at`` rule)."""
_TTL_SLACK: Final = 1e-3


def reply_to_of(header: dict[str, Any]) -> str | None:
    """The ``reply_to_message_id`` a (maybe malformed) message header names, if any."""
    meta = header.get("metadata")
    value = meta.get("reply_to_message_id") if isinstance(meta, dict) else None
    return value if isinstance(value, str) and len(value) <= 128 else None


def metadata_problem(entry: Pending, meta: Metadata, now: float) -> str | None:
    """Why a reply's metadata does not fit its task (None: it fits)."""
    if meta.message_type != entry.message_type:
        return f"message_type {meta.message_type!r} differs from the task's"
    if meta.group_id != entry.group_id:
        return f"group_id {meta.group_id!r:.40} differs from the task's"
    if entry.created_at and meta.ttl > entry.ttl + _TTL_SLACK:
        return f"ttl {meta.ttl} exceeds the task's {entry.ttl}"
    if entry.created_at and not (
        entry.created_at - CLOCK_SKEW <= meta.created_at <= now + CLOCK_SKEW
    ):
        return "created_at lies before its task or in the future"
    return None


def weight_problem(reply: Message, spec: AggregateSpec) -> str | None:
    """Why a reply cannot be weighted in its round (None: it can).

    The weight is the metric ``spec.weight_key``; exactly one MetricRecord of
    the reply holds it, and it is a finite number > 0. A missing weight is an
    error, never a weight of 1.
    """
    if not spec.weight_key or not reply.has_content():
        return None
    key = spec.weight_key
    holders = {name: rec[key] for name, rec in reply.content.metric_records.items() if key in rec}
    if not holders:
        return f"the reply has no metric {key!r} (the weight of this round)"
    if len(holders) > 1:
        return (
            f"metric {key!r} is in several records {sorted(holders)[:4]}: the weight is ambiguous"
        )
    (value,) = holders.values()
    if isinstance(value, list):
        return f"metric {key!r} (the weight) must be one number, got a list"
    weight = float(value)
    if not math.isfinite(weight) or weight <= 0:
        return f"metric {key!r} (the weight) must be finite and > 0, got {value!r}"
    return None


class ReplyIntake:
    """Checks and routes nodes' replies (IO thread only).

    Args:
        core: the router's shared state.
    """

    def __init__(self, core: RoutingCore) -> None:
        self._core = core

    def on_reply(self, node: Node, frames: list[zmq.Frame], header: dict[str, Any]) -> None:
        """Handle a reply (kind ``message``) from ``node``, whose frame 0 is ``header``."""
        core = self._core
        reply_to = reply_to_of(header)
        if reply_to is not None:
            node.answered(reply_to)  # it read that task, whatever happens to the reply
        nbytes = sum(len(f) for f in frames)
        uncredited = self._credit_problem(node, reply_to, nbytes)
        if uncredited is not None:  # before decoding: an uncredited upload costs nothing more
            core.stats["reply_uncredited"] += 1
            task = core.pending.get(reply_to or "")
            if task is not None and task.node_id == node.node_id:
                self._reject(node, task, uncredited)
            else:
                self._refuse(node, ErrorCode.OVERLOADED, uncredited, reply_to)
            return
        try:
            views = [as_memoryview(f, i) for i, f in enumerate(frames)]
            reply = decode_parsed(header, views, limits=core.limits)  # frame 0 parsed once
        except DeserializationError as exc:
            core.stats["fleet_malformed"] += 1
            log.warning("reply_malformed", node_id=node.node_id, error=str(exc))
            self._refuse(node, ErrorCode.MALFORMED, str(exc), reply_to)
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
            grant = core.credit.grant_of(meta.reply_to_message_id)
            if grant is not None and grant.node_id == node.node_id:
                core.release(meta.reply_to_message_id)
            self._refuse(node, ErrorCode.REJECTED, entry, meta.reply_to_message_id)
            return
        problem = self._rule_problem(entry, reply)
        if problem is not None:
            self._reject(node, entry, problem)
            return
        self._accept(node, entry, reply, frames)

    def _accept(self, node: Node, entry: Pending, reply: Message, frames: list[zmq.Frame]) -> None:
        core = self._core
        core.pending.pop(entry.message_id)
        core.remember(entry.message_id)
        run = core.runs.get(entry.run_id)
        if run is not None:
            run.replies += 1
            run.bytes_in += sum(len(f) for f in frames)
        core.stats["replies"] += 1
        if entry.round_id:
            core.rounds.on_reply(entry, reply)
            return
        # The upload credit stays held until the ServerApp acks the reply: the link
        # never holds more replies than the credit window, however slow the app reads.
        if not core.to_app(entry.app_routing_id, [f.buffer for f in frames]):
            core.release(entry.message_id)

    def _credit_problem(self, node: Node, reply_to: str | None, nbytes: int) -> str | None:
        """Why a reply of ``nbytes`` may not come without (more) credit (None: it may)."""
        threshold = self._core.config.credit_threshold
        if nbytes <= threshold:
            return None
        grant = self._core.credit.grant_of(reply_to or "")
        if grant is None or grant.node_id != node.node_id:
            return (
                f"a reply of {nbytes} bytes (over the credit threshold of {threshold}) "
                "was sent without upload credit: credit_request first"
            )
        if nbytes > grant.nbytes:
            return f"the reply is {nbytes} bytes, {grant.nbytes} were granted"
        return None

    def _rule_problem(self, entry: Pending, reply: Message) -> str | None:
        """Why a reply to a pending task of its node is not taken (None: it is)."""
        core = self._core
        problem = metadata_problem(entry, reply.metadata, time.time())
        if problem is None and entry.round_id:
            rnd = core.rounds.rounds.get(entry.round_id)
            if rnd is not None and not rnd.finishing:
                problem = weight_problem(reply, rnd.spec)
        return problem

    def _reject(self, node: Node, entry: Pending, reason: str) -> None:
        """The reply answers ``entry`` but breaks a rule: the task fails with REJECTED."""
        core = self._core
        core.pending.pop(entry.message_id)
        core.remember(entry.message_id)
        core.release(entry.message_id)
        core.stats["replies_rejected"] += 1
        log.warning(
            "reply_rejected", node_id=node.node_id, reply_to=entry.message_id, reason=reason
        )
        core.fail(entry, ErrorCode.REJECTED, f"node {node.node_id}'s reply: {reason}")
        self._refuse(node, ErrorCode.REJECTED, reason, entry.message_id)

    def _refuse(self, node: Node, code: ErrorCode, reason: str, reply_to: str | None) -> None:
        core = self._core
        extra = {} if reply_to is None else {"reply_to": reply_to}
        core.refuse(core.fleet, node.routing_id, code, reason, **extra)

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
