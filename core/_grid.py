"""Grid: a ServerApp's connection to the link (the app endpoint).

The Grid owns one DEALER socket and is used from one thread. Every wait is a
``zmq.poll`` on that socket with a deadline: replies are handled the moment
they arrive, and there is no polling interval anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, overload

import structlog
import zmq

from ._context import Context, UserConfig
from ._errors import (
    ClosedError,
    ConnectionBrokenError,
    DeserializationError,
    FedzeroTimeoutError,
    ProtocolError,
)
from ._message import SERVER_NODE_ID, Message, new_message_id
from ._records import MetricRecord, RecordDict
from ._round_result import RoundResult
from .runtime import CurveKeys, apply_client_curve
from .wire import (
    PEER_VERSION,
    RUN_SECRET_ENV,
    DecodeLimits,
    control,
    decode_parsed,
    encode_content,
    finite_json,
    metadata_json,
    parse_envelope,
)

log = structlog.get_logger(__name__)

Listener = Callable[[dict[str, Any]], None]

# What the Grid accepts from its link: an aggregated round's result carries one
# ``node/<id>`` record per replying node, so a round over more nodes than the
# default 10,000-record cap must still decode (fan-out is capped at 65,536 ids).
_LINK_LIMITS = DecodeLimits(max_records=2**17)


class Grid:
    """The ServerApp's view of the federation: nodes, and messages to and from them.

    Args:
        link: the link's app endpoint, e.g. ``"tcp://127.0.0.1:9091"``.
        run_id: attach to this existing run; by default the link creates one.
        run_config: the run's configuration (used when the link creates the run).
        curve: CURVE keys, if the link's app endpoint requires them.
        connect_timeout: seconds to wait for the link to answer the hello.
        heartbeat_interval: seconds between pings while waiting.
        heartbeat_timeout: the link is considered gone after this much silence.
        listeners: callables that receive progress events (dicts with an
            ``"event"`` key: ``"sent"``, ``"reply"``, ``"aggregated"``,
            ``"report"``), e.g. a progress display.

    Raises:
        FedzeroTimeoutError: the link did not answer within ``connect_timeout``.
    """

    def __init__(
        self,
        link: str,
        *,
        run_id: int | None = None,
        run_config: UserConfig | None = None,
        curve: CurveKeys | None = None,
        connect_timeout: float = 10.0,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 5.0,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self._listeners = list(listeners)
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._address = link
        self._interval = heartbeat_interval
        self._timeout = heartbeat_timeout
        self._replies: dict[str, Message] = {}
        self._nodes: list[int] | None = None
        self._run_id: int | None = None
        self._run_config: UserConfig = {}
        self._closed = False
        # Silence is measured from the link's first word: until then only
        # connect_timeout bounds the wait (a link still starting is not silent).
        self._last_heard: float | None = None
        self._next_ping = time.monotonic() + heartbeat_interval
        try:
            if curve is not None:
                apply_client_curve(self._sock, curve)
            self._sock.connect(link)
            config = dict(run_config or {})
            # A run the link started for this process needs the secret it handed us.
            secret = os.environ.get(RUN_SECRET_ENV) if run_id is not None else None
            proof = {"secret": secret} if secret else {}
            hello = control(
                "app_hello", run_id=run_id, run_config=config, version=PEER_VERSION, **proof
            )
            self._send(hello)
            if not self._wait(lambda: self._run_id is not None, connect_timeout):
                raise FedzeroTimeoutError(
                    f"link at {link} did not answer within {connect_timeout}s"
                )
        except BaseException:
            self._shutdown()
            raise
        log.debug("grid_connected", link=link, run_id=self._run_id)

    # ------------------------------------------------------------------ public

    @property
    def run_id(self) -> int:
        """The id of this grid's run."""
        assert self._run_id is not None  # noqa: S101 - set by __init__ or it raised
        return self._run_id

    @property
    def run_config(self) -> UserConfig:
        """The run's configuration, as the link holds it."""
        return dict(self._run_config)

    def get_node_ids(self, min_nodes: int = 0, timeout: float = 10.0) -> list[int]:
        """Return the ids of the online nodes, once at least ``min_nodes`` are online.

        The link answers as soon as enough nodes are online (no polling), or
        after ``timeout`` with those there are.
        """
        self._nodes = None
        self._send(control("get_nodes", min_nodes=int(min_nodes), timeout=float(timeout)))
        if not self._wait(lambda: self._nodes is not None, timeout + 5.0):
            raise FedzeroTimeoutError(f"link did not list its nodes within {timeout}s")
        return list(self._nodes or [])

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str = "",
        ttl: float | None = None,
    ) -> Message:
        """Create a message of this run for ``dst_node_id``."""
        msg = Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)
        msg.metadata.run_id = self.run_id
        return msg

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Send messages to their nodes; return their ids.

        Messages that share one content object (the same RecordDict) are sent as
        one fan-out: the link receives the tensors once and sends the same
        buffers to every destination.
        """
        messages = list(messages)
        for group in self._groups(messages):
            self._push_group(group, None)
        return [m.metadata.message_id for m in messages]

    def _groups(self, messages: list[Message]) -> list[list[Message]]:
        """Group messages that share a content object, type, group id and TTL."""
        self._check_open()
        groups: dict[tuple[Any, ...], list[Message]] = defaultdict(list)
        for msg in messages:
            self._prepare(msg)
            meta = msg.metadata
            groups[(id(msg.content), meta.message_type, meta.group_id, meta.ttl)].append(msg)
        return list(groups.values())

    def report(self, server_round: int, metrics: Mapping[str, float | int]) -> None:
        """Record a round's metrics (e.g. central accuracy) with the link.

        The link keeps them with the run (stats API, dashboard), and listeners
        such as ``fedzero local``'s progress display show them.
        """
        clean = dict(MetricRecord(dict(metrics)))
        self._send(control("report", round=int(server_round), metrics=finite_json(clean)))
        self._emit(event="report", round=int(server_round), metrics=clean)

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """Return the replies that have arrived for ``message_ids`` (without waiting)."""
        self._drain()
        return [self._replies.pop(mid) for mid in message_ids if mid in self._replies]

    @overload
    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None, aggregate: None = None
    ) -> list[Message]: ...

    @overload
    def send_and_receive(
        self,
        messages: Iterable[Message],
        *,
        timeout: float | None = None,
        aggregate: Mapping[str, Any],
    ) -> RoundResult: ...

    def send_and_receive(
        self,
        messages: Iterable[Message],
        *,
        timeout: float | None = None,
        aggregate: Mapping[str, Any] | None = None,
    ) -> list[Message] | RoundResult:
        """Send ``messages`` and return their replies as soon as all have arrived.

        A node that dies or goes offline yields an error reply (code
        ``NODE_UNAVAILABLE``) within the link's liveness budget, and an expired
        message an error reply (``MESSAGE_EXPIRED``), so this returns without
        waiting for TTLs. With ``timeout``, returns the replies received by then.

        With ``aggregate``, the link aggregates the replies as they arrive and
        returns one :class:`RoundResult` instead of the replies. The messages
        must share one content object. Keys (all optional): ``method``
        (``"fedavg"``, ``"trimmed_mean"``, ``"median"``, ``"krum"``,
        ``"multikrum"``), ``arrays_key`` (``"arrays"``), ``weight_key``
        (``"num-examples"``; ``""`` for equal weights), ``beta`` (trimmed
        mean), ``num_malicious`` and ``num_selected`` (Krum), ``accumulator``
        (``"float32"``/``"float64"``), ``reject_non_finite`` (True),
        ``clip_norm`` (clip each update's distance to the sent model),
        ``min_replies``. ``timeout`` becomes the round's deadline: the link
        then aggregates what it has (at least ``min_replies``).

        Args:
            messages: the messages to send.
            timeout: seconds to wait at most (default: until every reply is in).
            aggregate: let the link aggregate (see above).

        Returns:
            The replies in the order of ``messages`` (missing ones left out), or
            the round's result when ``aggregate`` is given.

        Raises:
            ValueError: ``aggregate`` with messages that do not share one content.
            FedzeroTimeoutError: an aggregated round's result did not arrive.
        """
        if aggregate is None:
            return self.receive(self.push_messages(messages), timeout=timeout)
        spec = dict(aggregate)
        round_id = spec["round_id"] = new_message_id()
        if timeout is not None:
            spec["deadline"] = float(timeout)
        groups = self._groups(list(messages))
        if len(groups) != 1:
            raise ValueError("aggregate= needs messages that share one content object")
        self._push_group(groups[0], spec)
        grace = None if timeout is None else timeout + max(5.0, self._timeout)
        if not self._wait(lambda: round_id in self._replies, grace):
            raise FedzeroTimeoutError(f"no aggregated result from the link within {grace}s")
        result = RoundResult.from_message(
            self._replies.pop(round_id), spec.get("arrays_key", "arrays")
        )
        meta = groups[0][0].metadata
        self._emit(
            event="aggregated",
            message_type=meta.message_type,
            group_id=meta.group_id,
            replies=result.replies,
            failures=len(result.failures),
            errors=list(dict.fromkeys(e.reason for e in result.failures.values()))[:5],
        )
        return result

    def receive(self, message_ids: Iterable[str], *, timeout: float | None = None) -> list[Message]:
        """Wait for the replies to pushed messages; return them in the order of the ids.

        Returns as soon as every reply (or error reply) is in, or at ``timeout``
        with those received by then.
        """
        ids = list(message_ids)
        self._wait(lambda: all(mid in self._replies for mid in ids), timeout)
        return self.pull_messages(ids)

    def close(self) -> None:
        """Tell the link this ServerApp is done and close the connection."""
        if self._closed:
            return
        with contextlib.suppress(zmq.ZMQError, ClosedError):
            self._send(control("app_bye"))
        self._shutdown()

    def __enter__(self) -> Grid:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- internal

    def _shutdown(self) -> None:
        self._closed = True
        self._sock.close(linger=0)
        self._ctx.term()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this Grid is closed")

    def _prepare(self, msg: Message) -> None:
        if not isinstance(msg, Message) or not msg.has_content():
            raise TypeError("push_messages takes Messages with content (see create_message)")
        if msg.metadata.dst_node_id == SERVER_NODE_ID:
            raise ValueError("a message needs a destination node id (not 0)")
        msg.metadata.run_id = self.run_id
        msg.metadata.src_node_id = SERVER_NODE_ID

    def _push_group(self, group: list[Message], aggregate: dict[str, Any] | None) -> None:
        first = group[0].metadata
        records, payload = encode_content(group[0].content)
        # The per-destination fields are filled in by the link for each node.
        template = metadata_json(dataclasses.replace(first, message_id="", dst_node_id=0))
        dst = [[m.metadata.dst_node_id, m.metadata.message_id] for m in group]
        header = control("push", metadata=template, content=records, dst=dst, aggregate=aggregate)
        self._send([*header, *payload])
        self._emit(
            event="sent", message_type=first.message_type, group_id=first.group_id, count=len(group)
        )

    def _send(self, frames: list[Any]) -> None:
        self._check_open()
        try:
            self._sock.send_multipart(frames, copy=False)
        except zmq.ZMQError as exc:
            raise ConnectionBrokenError(f"send to link {self._address} failed: {exc}") from exc

    def _drain(self) -> None:
        received: list[str] = []
        while True:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self._last_heard = time.monotonic()
            reply_to = self._handle(frames)
            if reply_to:
                received.append(reply_to)
        if received:  # the link holds a node's upload credit until we have the reply
            self._send(control("ack", message_ids=received))

    def _handle(self, frames: list[zmq.Frame]) -> str | None:
        """Handle one message from the link; return the id it answers, if a reply."""
        try:
            kind, header, views = parse_envelope(frames, limits=_LINK_LIMITS)
            if kind == "message":
                msg = decode_parsed(header, views, limits=_LINK_LIMITS)  # frame 0 parsed once
                meta = msg.metadata
                self._replies[meta.reply_to_message_id] = msg
                self._emit(
                    event="reply",
                    message_type=meta.message_type,
                    group_id=meta.group_id,
                    node_id=meta.src_node_id,
                    error=msg.has_error(),
                )
                return meta.reply_to_message_id
            if kind == "app_welcome":
                self._run_id = header["run_id"]
                self._run_config = header["run_config"]
            elif kind == "nodes":
                self._nodes = [int(n) for n in header["node_ids"]]
            elif kind == "refused":
                raise ProtocolError(f"link refused: {header['reason']}")
        except DeserializationError as exc:
            log.warning("grid_malformed_from_link", error=str(exc))
        return None

    def _emit(self, **event: Any) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a display must never break the run
                log.exception("grid_listener_failed")

    def _wait(self, done: Any, timeout: float | None) -> bool:
        """Handle incoming messages until ``done()`` or the deadline; return done()."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._drain()
            if done():
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            if self._last_heard is not None and now - self._last_heard > self._timeout:
                raise ConnectionBrokenError(
                    f"link at {self._address} silent for {now - self._last_heard:.1f}s"
                )
            if now >= self._next_ping:
                self._send(control("ping"))
                self._next_ping = now + self._interval
            wake = min(self._next_ping, deadline if deadline is not None else self._next_ping)
            self._sock.poll(max(1, int((wake - now) * 1000)))


def run_server_app(
    app: Any,
    link: str,
    *,
    run_config: UserConfig | None = None,
    run_id: int | None = None,
    curve: CurveKeys | None = None,
    listeners: Iterable[Listener] = (),
) -> Context:
    """Run a :class:`ServerApp` in this process against a running link.

    Returns:
        The context the app ran with (its ``state`` holds what the app stored).
    """
    with Grid(link, run_id=run_id, run_config=run_config, curve=curve, listeners=listeners) as grid:
        context = Context(run_id=grid.run_id, node_id=SERVER_NODE_ID, run_config=grid.run_config)
        app(grid, context)
    return context
