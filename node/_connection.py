"""The node's connection to the link: connect, register, heartbeat, reconnect.

One DEALER, owned by the agent's IO thread, connects out to the link's fleet
endpoint (``IMMEDIATE``: nothing queues for a link that is not there), with a
monitor socket that reports failed handshakes. The node says ``hello`` until the
link's ``welcome``, then pings every ``heartbeat_interval``; silence from the
link for ``heartbeat_timeout`` counts as a lost link: back off (exponential,
with jitter), reconnect on a fresh socket and register again. A ``reregister``
from the link starts the hellos again on the same socket. A node that keeps
trying without an answer says so, with the address, every
:data:`WARN_EVERY` attempts (``link_unreachable``).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import structlog
import zmq
from zmq.utils.monitor import recv_monitor_message

from fedzero.core import UserConfig
from fedzero.core.runtime import CurveKeys, Notifier, apply_client_curve, zmq_errors
from fedzero.core.wire import PEER_VERSION, control

log = structlog.get_logger(__name__)

WARN_EVERY: Final = 5
"""Unanswered hellos between two ``link_unreachable`` warnings."""
HELLO_WAIT: Final = (2.0, 30.0)
"""Wait for a welcome after the first unanswered hello, and the longest (doubling, jittered)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """How the node connects, and its liveness settings until the link's welcome.

    Attributes:
        max_message_bytes: the largest frame accepted from the link (ZMQ_MAXMSGSIZE).
        curve: CURVE keys, when the link requires them.
        backoff_initial: first reconnect delay in seconds (doubles, with jitter).
        backoff_max: longest reconnect delay.
        heartbeat_interval: pings before the link's welcome says otherwise.
        heartbeat_timeout: silence after which the link counts as lost.
    """

    max_message_bytes: int = 4 * 2**30
    curve: CurveKeys | None = None
    backoff_initial: float = 0.1
    backoff_max: float = 10.0
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 30.0


def stored_node_id(state_dir: Path | None) -> int | None:
    """The node id a previous run of this node was given, kept under ``state_dir``."""
    if state_dir is None or not (state_dir / "node-id").exists():
        return None
    text = (state_dir / "node-id").read_text(encoding="ascii").strip()
    return int(text) if text.isdigit() else None


class LinkConnection:
    """The DEALER to the link and the node's registration on it (IO thread only).

    Args:
        ctx: the agent's zmq context.
        address: the link's fleet endpoint.
        options: connection and liveness settings.
        node_id: the id to ask for (None: the link picks one).
        node_config: this node's configuration, sent in each ``hello``.
        state_dir: where the id the link gave is kept (None: nowhere).
        notifier: told when the node registered.
        stop: set when the agent stops (cuts a reconnect back-off short).
    """

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        address: str,
        options: ConnectionOptions,
        *,
        node_id: int | None,
        node_config: Mapping[str, Any] | None,
        state_dir: Path | None,
        notifier: Notifier,
        stop: threading.Event,
    ) -> None:
        self.address = address
        self.node_id = node_id if node_id is not None else stored_node_id(state_dir)
        self.node_config: UserConfig = dict(node_config or {})
        self.registered = threading.Event()
        self.registrations = 0
        self.sock: zmq.Socket[bytes] | None = None
        self.monitor: zmq.Socket[bytes] | None = None
        self._ctx = ctx
        self._options = options
        self._id_file = None if state_dir is None else state_dir / "node-id"
        self._notifier = notifier
        self._stop = stop
        self._interval = options.heartbeat_interval
        self._timeout = options.heartbeat_timeout
        self._handshake_failed = False
        self._failures = 0
        self._unanswered = 0
        self._last_heard = 0.0
        self._next_ping = 0.0
        self._next_hello = 0.0
        self._session = ""  # the link's token of this node's registration (from welcome)

    def connect(self) -> None:
        """Connect a fresh DEALER (closing the old one); registration starts over.

        Raises:
            ConfigurationError: the link address is not one ZeroMQ can connect to.
        """
        if self.sock is not None:
            self.sock.disable_monitor()
            self.sock.close(linger=0)
        if self.monitor is not None:
            self.monitor.close(linger=0)
            self.monitor = None
        sock = self._ctx.socket(zmq.DEALER)
        self.sock = sock
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue for a link that is not there
        sock.setsockopt(zmq.MAXMSGSIZE, self._options.max_message_bytes)  # bounded input
        sock.setsockopt(zmq.RECONNECT_IVL, int(self._options.backoff_initial * 1000))
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(self._options.backoff_max * 1000))
        if self._options.curve is not None:
            apply_client_curve(sock, self._options.curve)
        # A failed handshake (e.g. our CURVE key is not allowed) ends a connection for
        # good in libzmq: watch for it, say so, and retry on a fresh socket.
        self.monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        )
        with zmq_errors("connect to the link", self.address):
            sock.connect(self.address)
        self.registered.clear()
        self._last_heard = time.monotonic()
        self._next_hello = time.monotonic()

    def close(self) -> None:
        """Say ``bye`` if registered (the link learns now, not after a timeout); close."""
        if self.monitor is not None:
            self.monitor.close(linger=0)
        if self.sock is not None:
            if self.registered.is_set():
                self.send(control("bye", reason="node stopping"))
            self.sock.close(linger=500)
        self.sock = self.monitor = None

    def send(self, frames: list[Any]) -> bool:
        """Send without blocking; False when not connected (the caller retries later)."""
        if self.sock is None:
            return False
        try:
            self.sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False  # not connected (IMMEDIATE)
        return True

    def next_due(self) -> float:
        """When :meth:`tick` has something to do next (monotonic time)."""
        return self._next_ping if self.registered.is_set() else self._next_hello

    def heard(self) -> None:
        """The link said something: it is alive."""
        self._last_heard = time.monotonic()

    def tick(self, now: float) -> bool:
        """Say hello, ping, or reconnect when the link went silent.

        Returns:
            Whether the socket was replaced (what was sent on the old one is lost).
        """
        if not self.registered.is_set():
            if now < self._next_hello:
                return False
            self._count_attempt()
            return self._hello(now)
        self._unanswered = 0
        if now - self._last_heard > self._timeout:
            silent = round(now - self._last_heard, 2)
            log.warning("link_lost", node_id=self.node_id, link=self.address, silent_secs=silent)
            self._failures += 1
            self._stop.wait(self._backoff_delay())
            self.connect()
            return True
        if now >= self._next_ping:
            self.send(control("ping"))
            self._next_ping = now + self._interval
        return False

    def _hello(self, now: float) -> bool:
        reconnected = self._handshake_failed
        if reconnected:
            self._handshake_failed = False
            self.connect()
        proof = {"session": self._session} if self._session else {}  # the same node, back
        hello = control(
            "hello",
            node_id=self.node_id,
            node_config=self.node_config,
            version=PEER_VERSION,
            **proof,
        )
        sent = self.send(hello)
        self._failures += 1
        self._next_hello = now + (self._backoff_delay() if not sent else self._hello_wait())
        return reconnected

    def _hello_wait(self) -> float:
        """How long a sent hello waits for its welcome: doubling, jittered (no stampede)."""
        first, longest = HELLO_WAIT
        wait: float = min(longest, first * 2 ** min(max(self._unanswered - 1, 0), 30))
        return wait * random.uniform(0.75, 1.25)  # noqa: S311 - jitter, not crypto

    def on_refused(self, header: Mapping[str, Any]) -> None:
        """A busy link refused our hello with ``retry_after``: come back then, jittered."""
        retry_after = header.get("retry_after")
        if self.registered.is_set() or not isinstance(retry_after, int | float):
            return
        delay = min(max(float(retry_after), 0.0), HELLO_WAIT[1])
        self._next_hello = time.monotonic() + delay * random.uniform(1.0, 1.5)  # noqa: S311

    def _count_attempt(self) -> None:
        """One more hello without a welcome: every few, say which address does not answer."""
        self._unanswered += 1
        if self._unanswered % WARN_EVERY == 0:
            log.warning(
                "link_unreachable",
                link=self.address,
                attempts=self._unanswered,
                advice="is the link running, and is this its fleet address?",
            )

    def _backoff_delay(self) -> float:
        low, high = self._options.backoff_initial, self._options.backoff_max
        delay: float = min(high, low * 2 ** min(self._failures, 30))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto

    def on_monitor(self) -> None:
        """Read the monitor: a failed handshake means a fresh socket at the next hello."""
        if self.monitor is None:
            return
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handshake_failed = True
            self._next_hello = time.monotonic() + self._backoff_delay()
            log.error(
                "link_handshake_failed",
                link=self.address,
                zmq_event=zmq.Event(event["event"]).name,
                advice="is this node's public key in the link's allowed keys directory?",
            )

    def on_welcome(self, header: dict[str, Any]) -> None:
        """The link registered this node: keep the id, adopt its liveness settings."""
        if self._id_file is not None and header["node_id"] != self.node_id:
            self._id_file.parent.mkdir(parents=True, exist_ok=True)
            self._id_file.write_text(f"{header['node_id']}\n", encoding="ascii")
        self.node_id = header["node_id"]
        self._session = header["session"]  # proves this node if it re-registers elsewhere
        self._interval = float(header["heartbeat_interval"])
        self._timeout = float(header["heartbeat_timeout"])
        self._failures = 0
        self.registrations += 1
        self._next_ping = time.monotonic() + self._interval
        self.registered.set()
        self._notifier.status(f"registered with {self.address} as node {self.node_id}")
        log.info("node_registered", node_id=self.node_id, link=self.address)

    def reregister(self, reason: str) -> None:
        """The link asks for a new ``hello`` (it lost this node's registration)."""
        log.info("link_asks_reregister", reason=reason)
        self.registered.clear()
        self._next_hello = time.monotonic()
