"""NodeAgent: connects out to the link, registers, heartbeats, runs the ClientApp.

One IO thread owns the DEALER socket. ClientApp calls run on a worker thread
per run (serial within a run, concurrent across runs), so heartbeats keep
flowing while an app trains. Workers hand replies back through a socketpair the
IO thread polls next to the DEALER.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import structlog
import zmq
from zmq.utils.monitor import recv_monitor_message

from fedzero.core import (
    ClientApp,
    Context,
    DeserializationError,
    Error,
    ErrorCode,
    Message,
    UserConfig,
    decode,
    encode,
)
from fedzero.core.bundles import BundleError, BundlePolicy
from fedzero.core.runtime import CurveKeys, Notifier, apply_client_curve
from fedzero.core.wire import control, parse_envelope

from ._bundles import BundleFetcher
from ._runner import Outgoing, ProcessRunner, Runner, ThreadRunner
from ._tasks import handle_message

log = structlog.get_logger(__name__)

DEFAULT_LINK: Final = "tcp://127.0.0.1:9092"
VERSION: Final = "fedzero/1"


class NodeAgent:
    """A node: the long-running agent next to the data.

    Three ways to run ClientApps:

    - ``NodeAgent(client_app)``: the given ClientApp object, in this process
      (one thread per run) — for embedding and the Python API;
    - ``NodeAgent(app_dir=path, isolation="process")``: the app folder's
      ClientApp, in one worker process per run that lives as long as the run;
    - ``NodeAgent()`` (no app): each run's app comes from its bundle, fetched
      from the link, verified, checked against ``allowed_bundles``, cached in
      ``bundle_dir``, and run in a worker process per run.

    Args:
        app: a ClientApp object to run for every run, in this process.
        link: the link's fleet endpoint.
        app_dir: an app folder whose ClientApp serves every run (worker processes).
        isolation: ``"thread"`` (in this process) or ``"process"`` (a worker per run).
        bundle_dir: the bundle cache (default: a private temporary directory).
        allowed_bundles: bundle hashes this node runs (None: any bundle the link sends).
        log_level: the worker processes' log level.
        max_message_bytes: the largest frame accepted from the link (ZMQ_MAXMSGSIZE).
        state_dir: where the node remembers the id the link gave it, so a restarted
            node is the same node (a CURVE key or ``node_id`` also fix the identity).
        node_config: this node's configuration, e.g. ``{"partition-id": 0}``.
        node_id: a fixed node id (ignored by a link that derives ids from CURVE keys).
        curve: CURVE keys, when the link requires them.
        backoff_initial: first reconnect delay in seconds (doubles, with jitter).
        backoff_max: longest reconnect delay.
        heartbeat_interval: pings before the link's welcome says otherwise.
        heartbeat_timeout: silence after which the link counts as lost.
        notifier: tells systemd the node serves, its status, and when it stops.
    """

    def __init__(
        self,
        app: ClientApp | None = None,
        link: str = DEFAULT_LINK,
        *,
        app_dir: Path | None = None,
        isolation: Literal["thread", "process"] = "thread",
        bundle_dir: Path | None = None,
        allowed_bundles: frozenset[str] | None = None,
        log_level: str | None = None,
        state_dir: Path | None = None,
        max_message_bytes: int = 4 * 2**30,
        node_config: Mapping[str, Any] | None = None,
        node_id: int | None = None,
        curve: CurveKeys | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 3.0,
        notifier: Notifier | None = None,
    ) -> None:
        if isolation == "thread" and app is None:
            raise ValueError("in-process (thread) isolation needs a ClientApp object")
        self._notifier = notifier or Notifier(None)
        self.app = app
        self._app_dir = app_dir
        self._isolation = isolation
        self._worker_log_level = log_level
        self._runner: Runner | None = None
        self._fetcher = (
            BundleFetcher(bundle_dir, BundlePolicy(allowed_bundles), self._wake)
            if app is None and app_dir is None else None
        )  # fmt: skip
        self._run_bundles: dict[int, str] = {}
        self._max_message_bytes = max_message_bytes
        self._id_file = None if state_dir is None else state_dir / "node-id"
        if node_id is None and self._id_file is not None and self._id_file.exists():
            text = self._id_file.read_text(encoding="ascii").strip()
            node_id = int(text) if text.isdigit() else None
        self.link = link
        self.node_config: UserConfig = dict(node_config or {})
        self._curve = curve
        self._backoff = (backoff_initial, backoff_max)
        self._interval = heartbeat_interval
        self._timeout = heartbeat_timeout
        self._credit_threshold = 2**20
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._sock: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self._handshake_failed = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._awaiting_credit: dict[str, list[Any]] = {}
        self._contexts: dict[int, Context] = {}
        self.node_id: int | None = node_id
        self._registered = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._last_heard = 0.0
        self._next_ping = 0.0
        self._next_hello = 0.0
        self.registrations = 0
        # Re-entrant: drain() runs from a signal handler on the thread that may hold it.
        self._lock = threading.RLock()
        self._drain_deadline: float | None = None
        self._next_watchdog = 0.0

    # --------------------------------------------------------------- lifecycle

    def start(self) -> NodeAgent:
        """Run the agent in a background thread; returns at once."""
        self._thread = threading.Thread(target=self.run, name="fedzero-node", daemon=True)
        self._thread.start()
        return self

    def wait_registered(self, timeout: float) -> bool:
        """Wait until the link has welcomed this node."""
        return self._registered.wait(timeout)

    def drain(self, grace: float) -> None:
        """Finish the tasks in progress (up to ``grace`` seconds), refuse new ones, then stop.

        Safe from any thread and from a signal handler; a second call stops at once.
        """
        with self._lock:
            now = time.monotonic()
            self._drain_deadline = now + grace if self._drain_deadline is None else now
        with contextlib.suppress(OSError):
            self._wake_w.send(b"d")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the agent (from any thread) and wait for it to finish."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run(self) -> None:
        """Serve until :meth:`stop`."""
        log.info("node_starting", link=self.link, node_config=self.node_config)
        if self._isolation == "process" or self.app is None:
            self._runner = ProcessRunner(self._ctx, self._app_dir, self._worker_log_level)
        else:
            self._runner = ThreadRunner(self.app, self._wake, handle_message)
        try:
            self._connect()
            self._notifier.ready(f"connecting to {self.link}")
            self._loop()
        finally:
            self._runner.close(5.0)
            if self._fetcher is not None:
                self._fetcher.close()
            if self._monitor is not None:
                self._monitor.close(linger=0)
            if self._sock is not None:
                if self._registered.is_set():  # tell the link now, not after a timeout
                    self._send(control("bye", reason="node stopping"))
                self._sock.close(linger=500)
            self._ctx.term()
            self._wake_r.close()
            self._wake_w.close()
            log.info("node_stopped", node_id=self.node_id)

    # ------------------------------------------------------------- connection

    def _connect(self) -> None:
        if self._sock is not None:
            self._sock.disable_monitor()
            self._sock.close(linger=0)
        if self._monitor is not None:
            self._monitor.close(linger=0)
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue for a link that is not there
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_message_bytes)  # bounded input, even from a link
        sock.setsockopt(zmq.RECONNECT_IVL, int(self._backoff[0] * 1000))
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(self._backoff[1] * 1000))
        if self._curve is not None:
            apply_client_curve(sock, self._curve)
        # A failed handshake (e.g. our CURVE key is not allowed) ends a connection for
        # good in libzmq: watch for it, say so, and retry on a fresh socket.
        self._monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        )
        sock.connect(self.link)
        self._sock = sock
        self._registered.clear()
        self._awaiting_credit.clear()
        self._last_heard = time.monotonic()
        self._next_hello = time.monotonic()

    def _backoff_delay(self) -> float:
        low, high = self._backoff
        delay: float = min(high, low * 2 ** min(self._failures, 30))
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto

    def _send(self, frames: list[Any]) -> bool:
        assert self._sock is not None  # noqa: S101
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False  # not connected (IMMEDIATE): the caller retries later
        return True

    def _hello(self, now: float) -> None:
        if self._handshake_failed:
            self._handshake_failed = False
            self._connect()
        sent = self._send(
            control("hello", node_id=self.node_id, node_config=self.node_config, version=VERSION)
        )
        self._failures += 1
        self._next_hello = now + (self._backoff_delay() if not sent else max(1.0, self._timeout))

    # -------------------------------------------------------------------- loop

    def _loop(self) -> None:
        assert self._runner is not None  # noqa: S101 - set in run()
        poller = zmq.Poller()
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        for item in self._runner.pollables():
            poller.register(item, zmq.POLLIN)
        sock: zmq.Socket[bytes] | None = None
        monitor: zmq.Socket[bytes] | None = None
        while not self._stop.is_set():
            if self._drained():
                break
            if sock is not self._sock:
                for old in (sock, monitor):
                    if old is not None:
                        poller.unregister(old)
                sock, monitor = self._sock, self._monitor
                for new in (sock, monitor):
                    if new is not None:
                        poller.register(new, zmq.POLLIN)
            now = time.monotonic()
            self._tick(now)
            if now >= self._next_watchdog:
                self._notifier.watchdog()
                self._next_watchdog = now + (self._notifier.watchdog_interval or 3600.0)
            wait = (self._next_ping if self._registered.is_set() else self._next_hello) - now
            wait = min(wait, self._next_watchdog - now)
            events = dict(poller.poll(max(0, int(wait * 1000)) + 1))
            if self._wake_r.fileno() in events:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            self._send_outgoing(self._runner.collect(set(events), time.monotonic()))
            self._release_waiting()
            if monitor in events:
                self._on_monitor()
            if sock in events:
                self._drain()

    def _drained(self) -> bool:
        """While draining: whether every task is answered (or the grace is over)."""
        with self._lock:
            deadline = self._drain_deadline
        if deadline is None or self._runner is None:
            return False
        waiting = sum(len(t) for t in self._fetcher.waiting.values()) if self._fetcher else 0
        busy = self._runner.in_flight + waiting
        done = busy == 0 and not self._awaiting_credit
        if done or time.monotonic() >= deadline:
            log.info("node_drained", node_id=self.node_id, unfinished=busy)
            self._notifier.stopping()
            return True
        return False

    def _tick(self, now: float) -> None:
        if not self._registered.is_set():
            if now >= self._next_hello:
                self._hello(now)
            return
        if now - self._last_heard > self._timeout:
            log.warning(
                "link_lost", node_id=self.node_id, silent_secs=round(now - self._last_heard, 2)
            )
            self._failures += 1
            delay = self._backoff_delay()
            self._stop.wait(delay)
            self._connect()
            return
        if now >= self._next_ping:
            self._send(control("ping"))
            self._next_ping = now + self._interval

    def _on_monitor(self) -> None:
        assert self._monitor is not None  # noqa: S101
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handshake_failed = True
            self._next_hello = time.monotonic() + self._backoff_delay()
            log.error(
                "link_handshake_failed",
                link=self.link,
                zmq_event=zmq.Event(event["event"]).name,
                advice="is this node's public key in the link's allowed keys directory?",
            )

    def _drain(self) -> None:
        assert self._sock is not None  # noqa: S101
        while True:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._last_heard = time.monotonic()
            try:
                self._handle(frames)
            except DeserializationError as exc:
                log.warning("link_message_malformed", error=str(exc))

    def _handle(self, frames: list[zmq.Frame]) -> None:
        kind, header, _ = parse_envelope(frames)
        if kind == "welcome":
            self._on_welcome(header)
        elif kind == "message":
            self._on_task(decode(frames), frames)
        elif kind == "bundle":
            self._on_bundle(header, frames)
        elif kind == "run":
            self._on_run(header)
        elif kind == "run_end":
            self._on_run_end(header["run_id"])
        elif kind == "credit_grant":
            pending = self._awaiting_credit.pop(header["reply_to"], None)
            if pending is not None:
                self._send(pending)
        elif kind == "reregister":
            log.info("link_asks_reregister", reason=header["reason"])
            self._registered.clear()
            self._next_hello = time.monotonic()
        elif kind == "refused":
            self._on_refused(header)

    def _on_welcome(self, header: dict[str, Any]) -> None:
        if self._id_file is not None and header["node_id"] != self.node_id:
            self._id_file.parent.mkdir(parents=True, exist_ok=True)
            self._id_file.write_text(f"{header['node_id']}\n", encoding="ascii")
        self.node_id = header["node_id"]
        self._interval = float(header["heartbeat_interval"])
        self._timeout = float(header["heartbeat_timeout"])
        self._credit_threshold = header["credit_threshold"]
        self._failures = 0
        self.registrations += 1
        self._next_ping = time.monotonic() + self._interval
        for ctx in self._contexts.values():
            ctx.node_id = header["node_id"]
        self._registered.set()
        self._notifier.status(f"registered with {self.link} as node {self.node_id}")
        log.info("node_registered", node_id=self.node_id, link=self.link)

    def _on_refused(self, header: dict[str, Any]) -> None:
        reply_to = header.get("reply_to")
        if isinstance(reply_to, str):
            self._awaiting_credit.pop(reply_to, None)
        log.warning("link_refused", code=header["code"], reason=header["reason"], reply_to=reply_to)

    def _on_run(self, header: dict[str, Any]) -> None:
        run_id = header["run_id"]
        bundle = header.get("bundle")
        self._run_bundles[run_id] = bundle if isinstance(bundle, str) else ""
        ctx = self._contexts.get(run_id)
        if ctx is None:
            self._contexts[run_id] = Context(
                run_id=run_id,
                node_id=self.node_id or 0,
                node_config=dict(self.node_config),
                run_config=header["run_config"],
            )
        else:
            ctx.run_config = header["run_config"]

    def _on_run_end(self, run_id: int) -> None:
        self._contexts.pop(run_id, None)
        self._run_bundles.pop(run_id, None)
        if self._runner is not None:
            self._runner.end_run(run_id)
        log.info("run_ended", run_id=run_id)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"r")

    # ------------------------------------------------------------------- tasks

    def _on_task(self, msg: Message, frames: list[zmq.Frame]) -> None:
        meta = msg.metadata
        if meta.dst_node_id != self.node_id or meta.is_expired():
            log.warning("task_dropped", message_id=meta.message_id, expired=meta.is_expired())
            return
        with self._lock:
            draining = self._drain_deadline is not None
        if draining:
            self._fail(msg, ErrorCode.RUN_STOPPED, "the node is shutting down")
            return
        ctx = self._contexts.get(meta.run_id)
        if ctx is None:
            ctx = Context(meta.run_id, meta.dst_node_id, node_config=dict(self.node_config))
            self._contexts[meta.run_id] = ctx
        app_dir: Path | None = None
        bundle = self._run_bundles.get(meta.run_id, "")
        if self._fetcher is not None:
            if not bundle:
                self._fail(
                    msg, ErrorCode.UNSUPPORTED, "this node runs apps from bundles; the run has none"
                )
                return
            found = self._fetcher.app_dir(bundle)
            if isinstance(found, BundleError):
                self._fail(msg, ErrorCode.UNAUTHORIZED, str(found))
                return
            if found is None:  # fetch it; the task waits
                self._fetcher.waiting.setdefault(bundle, []).append((msg, frames))
                if bundle not in self._fetcher.requested:
                    self._fetcher.requested.add(bundle)
                    self._send(control("get_bundle", hash=bundle))
                return
            app_dir = found
        assert self._runner is not None  # noqa: S101 - set in run()
        self._send_outgoing(self._runner.submit(msg, ctx, frames, app_dir))

    def _on_bundle(self, header: dict[str, Any], frames: list[zmq.Frame]) -> None:
        if self._fetcher is not None and len(frames) == 2:
            self._fetcher.install(header["hash"], frames[1].bytes)

    def _release_waiting(self) -> None:
        """Tasks whose bundle install finished go to their workers (or fail)."""
        if self._fetcher is None:
            return
        for bundle in self._fetcher.finished():
            for msg, frames in self._fetcher.waiting.pop(bundle, []):
                self._on_task(msg, frames)

    def _fail(self, msg: Message, code: ErrorCode, reason: str) -> None:
        self._send_outgoing(
            [Outgoing(msg.metadata.message_id, encode(msg.create_error_reply(Error(code, reason))))]
        )

    def _send_outgoing(self, replies: list[Outgoing]) -> None:
        for reply in replies:
            if reply.nbytes > self._credit_threshold:
                self._awaiting_credit[reply.reply_to] = reply.frames
                self._send(control("credit_request", reply_to=reply.reply_to, nbytes=reply.nbytes))
            elif not self._send(reply.frames):
                log.warning("reply_not_sent", reply_to=reply.reply_to)
