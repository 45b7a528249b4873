"""NodeAgent: connects out to the link, registers, heartbeats, runs the ClientApp.

One IO thread owns the DEALER socket (:mod:`._connection`: connection,
registration, liveness) and drives the task dispatch (:mod:`._dispatch`: tasks
to the runner, replies back under upload credit). ClientApp calls run on a
worker thread per run (serial within a run, concurrent across runs) or in a
worker process per run, so heartbeats keep flowing while an app trains. Worker
threads and bundle installs wake the IO thread through a :class:`WakePipe` it
polls next to the DEALER.

Supervision: a message from the link or a worker that makes its handler raise
becomes an error reply (a task) or a log line (anything else); the IO thread
goes on. Should the IO loop itself fail, the agent logs it, tells systemd, and
stops pinging the watchdog (:attr:`NodeAgent.healthy` turns False), so systemd
restarts the node instead of it looking alive.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import structlog
import zmq

from fedzero.core import ClientApp, ConfigurationError, DeserializationError, UserConfig
from fedzero.core.bundles import BundlePolicy
from fedzero.core.runtime import DEFAULT_FLEET_ADDRESS, CurveKeys, Notifier, WakePipe, drain
from fedzero.core.wire import decode_parsed, parse_envelope

from ._bundles import BundleFetcher
from ._connection import ConnectionOptions, LinkConnection
from ._dispatch import TaskDispatcher
from ._runner import ProcessRunner, Runner, ThreadRunner
from ._state_lock import StateDirLock
from ._tasks import handle_message

log = structlog.get_logger(__name__)

_Sockets = tuple[zmq.Socket[bytes] | None, zmq.Socket[bytes] | None]


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

    Raises:
        ConfigurationError: thread isolation without a ClientApp object; process
            isolation with a ClientApp object but no ``app_dir`` (a worker process
            loads its app from a folder); ``state_dir`` in use by another node.
    """

    def __init__(
        self,
        app: ClientApp | None = None,
        link: str = DEFAULT_FLEET_ADDRESS,
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
        _check_isolation(isolation, app, app_dir)
        self._state_lock = StateDirLock(state_dir) if state_dir is not None else None
        self.app = app
        self._app_dir = app_dir
        self._isolation = isolation
        self._worker_log_level = log_level
        self._notifier = notifier or Notifier(None)
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._wake = WakePipe()
        self._stop = threading.Event()
        backoff = (backoff_initial, backoff_max)
        liveness = (heartbeat_interval, heartbeat_timeout)
        options = ConnectionOptions(max_message_bytes, curve, *backoff, *liveness)
        self._conn = LinkConnection(
            self._ctx,
            link,
            options,
            node_id=node_id,
            node_config=node_config,
            state_dir=state_dir,
            notifier=self._notifier,
            stop=self._stop,
        )
        fetcher = None
        if app is None and app_dir is None:
            fetcher = BundleFetcher(bundle_dir, BundlePolicy(allowed_bundles), self._wake.wake)
        self._tasks = TaskDispatcher(self._conn, fetcher, self._draining)
        self._thread: threading.Thread | None = None
        # Re-entrant: drain() runs from a signal handler on the thread that may hold it.
        self._lock = threading.RLock()
        self._drain_deadline: float | None = None
        self._next_watchdog = 0.0
        self._failure: str | None = None

    # -------------------------------------------------------------- identity

    @property
    def link(self) -> str:
        """The link's fleet endpoint."""
        return self._conn.address

    @property
    def node_id(self) -> int | None:
        """The id the link gave this node (or the one it asks for, before the welcome)."""
        return self._conn.node_id

    @property
    def node_config(self) -> UserConfig:
        """This node's configuration, as sent to the link and given to every Context."""
        return self._conn.node_config

    @property
    def healthy(self) -> bool:
        """False once the agent's IO loop failed (it no longer serves; systemd restarts it)."""
        return self._failure is None

    @property
    def registrations(self) -> int:
        """How many times the link welcomed this node (1 + re-registrations)."""
        return self._conn.registrations

    # --------------------------------------------------------------- lifecycle

    def start(self) -> NodeAgent:
        """Run the agent in a background thread; returns at once."""
        self._thread = threading.Thread(target=self.run, name="fedzero-node", daemon=True)
        self._thread.start()
        return self

    def wait_registered(self, timeout: float) -> bool:
        """Wait until the link has welcomed this node."""
        return self._conn.registered.wait(timeout)

    def drain(self, grace: float) -> None:
        """Finish the tasks in progress (up to ``grace`` seconds), refuse new ones, then stop.

        Safe from any thread and from a signal handler; a second call stops at once.
        """
        with self._lock:
            now = time.monotonic()
            self._drain_deadline = now + grace if self._drain_deadline is None else now
        self._wake.wake()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the agent (from any thread) and wait for it to finish."""
        self._stop.set()
        self._wake.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run(self) -> None:
        """Serve until :meth:`stop`.

        Raises:
            ConfigurationError: the link address is not one ZeroMQ can connect to.
        """
        log.info("node_starting", link=self.link, node_config=self.node_config)
        try:
            pollables = self._tasks.start(self._make_runner())
            try:
                self._conn.connect()
                self._notifier.ready(f"connecting to {self.link}")
                self._loop(pollables)
            finally:
                self._tasks.close(5.0)
                self._conn.close()
        except Exception as exc:
            self._failed(exc)
            raise
        finally:
            self._ctx.term()
            self._wake.close()
            if self._state_lock is not None:
                self._state_lock.release()
            log.info("node_stopped", node_id=self.node_id)

    def _failed(self, exc: Exception) -> None:
        """The IO loop is gone: say so (the watchdog pings stopped with it)."""
        self._failure = f"{type(exc).__name__}: {exc}"
        log.critical("node_failed", error=self._failure, traceback=traceback.format_exc())
        self._notifier.status(f"failed: {self._failure}"[:200])

    def _make_runner(self) -> Runner:
        if self._isolation == "process" or self.app is None:
            return ProcessRunner(self._ctx, self._app_dir, self._worker_log_level)
        return ThreadRunner(self.app, self._wake.wake, handle_message)

    # -------------------------------------------------------------------- loop

    def _loop(self, pollables: list[zmq.Socket[bytes] | int]) -> None:
        poller = zmq.Poller()
        poller.register(self._wake.fileno(), zmq.POLLIN)
        for item in pollables:
            poller.register(item, zmq.POLLIN)
        watched: _Sockets = (None, None)
        while not self._stop.is_set() and not self._drained():
            now = time.monotonic()
            if self._conn.tick(now):  # a fresh socket
                self._tasks.on_reconnect()
            self._watchdog(now)
            watched = self._watch(poller, watched)
            due = self._tasks.next_due()
            wait = min(self._conn.next_due(), self._next_watchdog, due or float("inf")) - now
            events = dict(poller.poll(max(0, int(wait * 1000)) + 1))
            if self._wake.fileno() in events:
                self._wake.clear()
            self._tasks.collect(set(events))
            if self._conn.monitor is not None and self._conn.monitor in events:
                self._conn.on_monitor()
            if self._conn.sock is not None and self._conn.sock in events:
                drain(self._conn.sock, self._on_frames)

    def _watch(self, poller: zmq.Poller, watched: _Sockets) -> _Sockets:
        """Keep the poller on the connection's current socket and monitor."""
        current = (self._conn.sock, self._conn.monitor)
        if current[0] is watched[0] and current[1] is watched[1]:
            return watched
        for old in watched:
            if old is not None:
                poller.unregister(old)
        for new in current:
            if new is not None:
                poller.register(new, zmq.POLLIN)
        return current

    def _watchdog(self, now: float) -> None:
        if now >= self._next_watchdog:
            self._notifier.watchdog()
            self._next_watchdog = now + (self._notifier.watchdog_interval or 3600.0)

    def _draining(self) -> bool:
        with self._lock:
            return self._drain_deadline is not None

    def _drained(self) -> bool:
        """While draining: whether every task is answered (or the grace is over)."""
        with self._lock:
            deadline = self._drain_deadline
        if deadline is None:
            return False
        if self._tasks.idle() or time.monotonic() >= deadline:
            log.info("node_drained", node_id=self.node_id, unfinished=self._tasks.unfinished())
            self._notifier.stopping()
            return True
        return False

    # ------------------------------------------------------- from the link

    def _on_frames(self, frames: list[zmq.Frame]) -> None:
        self._conn.heard()
        try:
            self._handle(frames)
        except DeserializationError as exc:
            log.warning("link_message_malformed", error=str(exc))
        except Exception as exc:  # a task fails alone (see on_task); this is anything else
            error, trace = repr(exc)[:2000], traceback.format_exc()
            log.error("link_message_failed", error=error, traceback=trace)

    def _handle(self, frames: list[zmq.Frame]) -> None:
        kind, header, views = parse_envelope(frames)
        if kind == "welcome":
            # A welcome while not registered, after an earlier one: we reconnected.
            rejoined = self._conn.registrations > 0 and not self._conn.registered.is_set()
            self._conn.on_welcome(header)
            threshold = header["credit_threshold"]
            self._tasks.on_welcome(header["node_id"], threshold, rejoined=rejoined)
        elif kind == "message":
            self._tasks.on_task(decode_parsed(header, views), frames)  # frame 0 parsed once
        elif kind == "bundle":
            self._tasks.on_bundle(header, frames)
        elif kind == "run":
            self._tasks.on_run(header)
        elif kind == "run_end":
            self._tasks.on_run_end(header["run_id"])
        elif kind == "credit_grant":
            self._tasks.on_credit_grant(header["reply_to"])
        elif kind == "reregister":
            self._conn.reregister(header["reason"])
        elif kind == "refused":
            self._conn.on_refused(header)  # a busy link says when to say hello again
            self._tasks.on_refused(header)


def _check_isolation(isolation: str, app: ClientApp | None, app_dir: Path | None) -> None:
    """Refuse an isolation the given app cannot run in (before anything is made)."""
    if isolation == "thread" and app is None:
        raise ConfigurationError("in-process (thread) isolation needs a ClientApp object")
    if isolation == "process" and app is not None and app_dir is None:
        raise ConfigurationError(
            "process isolation loads the ClientApp from an app folder in each worker: "
            "pass app_dir, or isolation='thread' to run this ClientApp object"
        )
