"""In-memory state of the link: nodes, runs, and messages awaiting replies."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import heapq
import hmac
import secrets
import time
from typing import Any, Final

_RUN_KEY: Final = secrets.token_bytes(32)
"""This link process's key for run secrets (never leaves the process)."""


def run_secret(run_id: int) -> str:
    """The secret a ServerApp presents to attach to ``run_id`` (``app_hello.secret``).

    Derived from a random key of this link process, so it is unguessable, needs
    no storage, and dies with the process (a restarted link interrupts its runs).
    """
    digest = hmac.new(_RUN_KEY, f"run:{run_id}".encode(), hashlib.sha256)
    return digest.hexdigest()


def same_secret(given: object, expected: str) -> bool:
    """Constant-time comparison of a peer's token (any JSON value) with ours."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


class RunStatus(enum.StrEnum):
    """Lifecycle of a run."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"


@dataclasses.dataclass(slots=True)
class Node:
    """A registered node."""

    node_id: int
    routing_id: bytes
    node_config: dict[str, Any]
    public_key: str | None
    registered_at: float
    last_seen: float  # monotonic
    online: bool = True
    informed_runs: set[int] = dataclasses.field(default_factory=set)
    bytes_in: int = 0
    bytes_out: int = 0
    session: str = dataclasses.field(default_factory=lambda: secrets.token_hex(16))
    """The token of this registration (sent in ``welcome``; a re-hello elsewhere needs it)."""
    offline_since: float = 0.0  # monotonic; 0 while online
    unanswered: dict[str, int] = dataclasses.field(default_factory=dict)
    """Bytes of each task sent on this connection and not answered yet."""
    backlog: int = 0
    """Their sum: what may still sit unread in this node's queue."""

    def sent(self, message_id: str, nbytes: int) -> None:
        """A task of ``nbytes`` went out on this connection."""
        self.unanswered[message_id] = nbytes
        self.backlog += nbytes

    def answered(self, message_id: str) -> None:
        """The node answered ``message_id`` (so it read it), in time or not."""
        self.backlog -= self.unanswered.pop(message_id, 0)


@dataclasses.dataclass(slots=True)
class Run:
    """A run: its configuration, its ServerApp connection and its status."""

    run_id: int
    run_config: dict[str, Any]
    app_routing_id: bytes | None
    status: RunStatus = RunStatus.RUNNING
    started_at: float = dataclasses.field(default_factory=time.time)
    ended_at: float | None = None
    messages_sent: int = 0
    replies: int = 0
    failures: int = 0
    rounds_done: int = 0
    app: str = ""
    bundle_hash: str = ""
    error: str = ""
    exec_done: bool = True  # False while an exec-managed ServerApp process is alive
    ended_seq: int = 0  # the store write sequence number at the run's end
    nodes: set[int] = dataclasses.field(default_factory=set)
    bytes_in: int = 0  # replies received for this run
    bytes_out: int = 0  # tasks sent for this run
    app_gone_since: float = 0.0
    """Since when its ServerApp's connection is gone (monotonic; 0: it is there)."""
    announcement: list[bytes] = dataclasses.field(default_factory=list)
    """Its ``run`` message to nodes, encoded once (empty until first needed)."""

    def counters(self) -> dict[str, int]:
        """Its traffic counters, as fields of its row in the store."""
        return {
            "messages_sent": self.messages_sent,
            "replies": self.replies,
            "failures": self.failures,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


@dataclasses.dataclass(slots=True)
class Pending:
    """A message delivered to a node, waiting for its reply."""

    message_id: str
    run_id: int
    node_id: int
    app_routing_id: bytes
    message_type: str
    group_id: str
    expires_at: float  # wall clock, as the message's created_at + ttl
    round_id: str = ""  # set when the link aggregates this message's round
    ttl: float = 0.0  # the message's ttl (a reply may not outlive it)
    created_at: float = 0.0  # the message's created_at (wall clock)


class PendingTable:
    """Messages awaiting replies, indexed by id, node and expiry."""

    def __init__(self) -> None:
        self._by_id: dict[str, Pending] = {}
        self._by_node: dict[int, set[str]] = {}
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._by_id

    def get(self, message_id: str) -> Pending | None:
        """Return the pending entry of ``message_id``, if any."""
        return self._by_id.get(message_id)

    def add(self, entry: Pending) -> None:
        """Track ``entry`` until its reply arrives or it expires."""
        self._by_id[entry.message_id] = entry
        self._by_node.setdefault(entry.node_id, set()).add(entry.message_id)
        heapq.heappush(self._expiry, (entry.expires_at, entry.message_id))

    def pop(self, message_id: str) -> Pending | None:
        """Stop tracking ``message_id`` and return its entry."""
        entry = self._by_id.pop(message_id, None)
        if entry is not None:
            ids = self._by_node.get(entry.node_id)
            if ids is not None:
                ids.discard(message_id)
                if not ids:
                    del self._by_node[entry.node_id]
        return entry

    def pop_node(self, node_id: int) -> list[Pending]:
        """Stop tracking every message to ``node_id``; return them."""
        return [e for mid in list(self._by_node.get(node_id, ())) if (e := self.pop(mid))]

    def pop_run(self, run_id: int) -> list[Pending]:
        """Stop tracking every message of ``run_id``; return them."""
        ids = [mid for mid, e in self._by_id.items() if e.run_id == run_id]
        return [e for mid in ids if (e := self.pop(mid))]

    def pop_round(self, round_id: str) -> list[Pending]:
        """Stop tracking every message of the aggregated round ``round_id``; return them."""
        ids = [mid for mid, e in self._by_id.items() if e.round_id == round_id]
        return [e for mid in ids if (e := self.pop(mid))]

    def pop_expired(self, now: float) -> list[Pending]:
        """Stop tracking every message whose TTL ran out by ``now``; return them."""
        out: list[Pending] = []
        while self._expiry and self._expiry[0][0] <= now:
            _, mid = heapq.heappop(self._expiry)
            entry = self.pop(mid)
            if entry is not None:
                out.append(entry)
        return out

    def next_expiry(self) -> float | None:
        """Wall-clock time of the earliest expiry still tracked, if any."""
        while self._expiry and self._expiry[0][1] not in self._by_id:
            heapq.heappop(self._expiry)
        return self._expiry[0][0] if self._expiry else None
