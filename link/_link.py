"""The link: a single IO thread that serves nodes, ServerApps and the CLI.

One thread owns the fleet ROUTER (nodes), the app ROUTER (ServerApps) and the
control ROUTER (the ``fedzero`` CLI), and never blocks on anything but
``zmq.poll``; the :class:`~fedzero.link.routing.Router` it drives holds all
state. Other threads (the fold worker, the exec service, signal handlers,
callers of :meth:`Link.stop`) reach it one way only: a command on a queue and
a :class:`~fedzero.core.runtime.WakePipe` the loop polls.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import structlog
import zmq

from fedzero.core import ClosedError, ConfigurationError, FedzeroTimeoutError, configure_logging
from fedzero.core.runtime import (
    Notifier,
    WakePipe,
    bind_router,
    check_public_bind,
    drain,
    is_loopback,
    load_config,
)

from ._auth import LinkAuth
from ._config import LinkConfig
from ._guards import Guards, store_problem
from ._health import Health, HealthReport, thread_check, watch
from ._state import Run
from .exec import Control, ExecService
from .http import LinkStatsSource, StatsServer, parse_http_address
from .rounds import FoldWorker
from .routing import Router
from .store import StoreReader, StoreWriter, open_store

log = structlog.get_logger(__name__)

_BATCH: Final = 256  # messages handled per socket per loop turn (fairness)
_FINISH_SECS: Final = 5.0  # after the drain grace: time to deliver failed rounds' results

Command = tuple[str, float]
"""What other threads ask of the IO thread: ``(name, argument)``."""


class Link:
    """The hub of a federation.

    Use :meth:`start` to run it in a background thread (tests, embedding) or
    :meth:`run` to run it in the calling thread (the daemon).

    Args:
        config: the settings (default: loopback, no CURVE).
        notifier: tells systemd when the link serves, how it is, and when it stops.

    Raises:
        ConfigurationError: a setting is invalid (the message names it).
    """

    def __init__(self, config: LinkConfig | None = None, notifier: Notifier | None = None) -> None:
        self.config = config or LinkConfig()
        self.config.validate()
        self._notifier = notifier or Notifier(None)
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.stats: Counter[str] = Counter()
        """Event counters (replies, drops by reason, malformed input, ...)."""
        self.startup_error: BaseException | None = None
        """Why :meth:`run` returned without serving (bind or key errors), if it did."""
        self.fleet_endpoint = ""
        self.app_endpoint = ""
        self.control_endpoint = ""
        self.http_url = ""
        self._inbox: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._wake: WakePipe | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_requested = False
        self._loop_error = ""  # why the IO loop ended by an exception, if it did
        self._drain_deadline: float | None = None
        self._failed_all = False
        self._auth = LinkAuth(self._ctx, self.config)
        self._sockets: list[zmq.Socket[bytes]] = []
        self._router: Router | None = None
        self._worker: FoldWorker | None = None
        self._exec: ExecService | None = None
        self._control: Control | None = None
        self._http: StatsServer | None = None
        self._http_source: LinkStatsSource | None = None
        self._store: StoreWriter | None = None
        self._health: Health | None = None
        self._guards = Guards(self.stats)
        self._status = "serving"  # the last health summary told to systemd and the log
        self._reload_args: tuple[Path | None, Mapping[str, Any]] = (None, {})

    # --------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 10.0) -> Link:
        """Run the link in a background thread; return once it serves.

        Raises:
            ConfigurationError: an address cannot be bound, or keys are invalid.
            FedzeroTimeoutError: it did not serve within ``timeout`` seconds.
        """
        self._thread = threading.Thread(target=self.run, name="fedzero-link", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise FedzeroTimeoutError(f"the link did not start within {timeout} s")
        if self.startup_error is not None:
            self._thread.join()
            raise self.startup_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (from any thread) and wait for it to close its sockets."""
        self._post("stop")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def drain(self, grace: float) -> None:
        """Stop taking work; finish in-flight messages within ``grace`` seconds, then stop.

        New runs and new pushes are refused (``RUN_STOPPED``); what is still
        pending when the grace period ends is failed with ``RUN_STOPPED``. Safe
        from any thread and from a signal handler; :meth:`run` then returns.
        """
        self._post("drain", max(0.0, grace))

    def reload_keys(self) -> None:
        """Re-read the allowed node keys directory (safe from any thread)."""
        self._post("reload")

    def reload(self, config_file: Path | None, flags: Mapping[str, Any]) -> None:
        """SIGHUP: re-read the configuration; apply the log level and the allowed keys.

        Safe from a signal handler: it only queues the work for the IO loop.
        Other settings need a restart (their new values are ignored, with a log line).
        """
        self._reload_args = (config_file, dict(flags))
        self._post("reload_config")

    def _reload_config(self) -> None:
        config_file, flags = self._reload_args
        self._notifier.reloading()
        try:
            fresh = load_config(LinkConfig, "link", config_file=config_file, overrides=flags)
        except ConfigurationError as exc:
            log.error("reload_failed", error=str(exc))
        else:
            configure_logging(fresh.log_level)
            self.config.log_level = fresh.log_level
            log.info("config_reloaded", log_level=fresh.log_level)
        self._reload_keys()
        self._notifier.ready()

    def _reload_keys(self) -> None:
        self._auth.reload()
        if self._router is not None:
            self._router.keys_reloaded()  # nodes whose key was revoked are cut off

    def health(self) -> HealthReport:
        """Whether the link is whole: its threads alive, its store writing (any thread)."""
        health = self._health
        if health is None or not self._ready.is_set() or self.startup_error is not None:
            return HealthReport(unhealthy=("the link is not running",))
        return health.report()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the link serves (or failed to start)."""
        return self._ready.wait(timeout)

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until every state write queued so far is committed (any thread).

        Raises:
            FedzeroTimeoutError: not committed within ``timeout`` seconds.
        """
        if self._store is not None:
            self._store.flush(timeout)

    def store_reader(self) -> StoreReader:
        """A reader of the link's state, usable from another thread (stats, CLI).

        Raises:
            ClosedError: the link is not running (not started yet, or stopped).
        """
        if self._store is None:
            raise ClosedError("the link is not running")
        return self._store.reader()

    def _post(self, name: str, argument: float = 0.0) -> None:
        """Queue a command for the IO thread and wake it (any thread, signal handlers)."""
        self._inbox.put((name, argument))
        wake = self._wake
        if wake is not None:  # before run(): the loop reads the queue when it starts
            wake.wake()

    def run(self) -> None:
        """Serve until :meth:`stop`: bind, loop, then close everything."""
        self._wake = wake = WakePipe()
        try:
            router, control = self._bind()
        except BaseException as exc:
            self.startup_error = exc
            self._ready.set()
            self._close()
            return
        self._router = router
        self._start_http()
        self._ready.set()
        self._notifier.ready(f"serving: fleet {self.fleet_endpoint}, app {self.app_endpoint}")
        curve = self.config.curve_enabled
        log.info("link_started", fleet=self.fleet_endpoint, app=self.app_endpoint, curve=curve)
        try:
            self._loop(router, control, wake)
            router.close_runs("the link shut down")
        except BaseException as exc:
            self._loop_error = f"{type(exc).__name__}: {exc}"
            log.critical("link_failed", error=self._loop_error, exc_info=True)
            self._notifier.status(f"failed: {self._loop_error}")
            raise
        finally:
            self._close()
            log.info("link_stopped", **dict(self.stats))

    def _bind(self) -> tuple[Router, Control]:
        cfg = self.config
        check_public_bind(cfg.fleet_address, cfg.curve_enabled, "fleet")
        check_public_bind(cfg.app_address, False, "app")
        if not cfg.control_curve_enabled and not is_loopback(cfg.control_address):
            raise ConfigurationError(
                f"control_address: {cfg.control_address} is not loopback; whoever reaches the "
                "control endpoint can run code here, so it needs control_allowed_keys_dir "
                "(CURVE with allow-listed user keys) to be bound off this machine"
            )
        fleet = self._bind_one(cfg.fleet_address, self._auth.fleet())
        app = self._bind_one(cfg.app_address, None)
        control_sock = self._bind_one(cfg.control_address, self._auth.control())
        self.fleet_endpoint, self.app_endpoint, self.control_endpoint = (
            sock.getsockopt_string(zmq.LAST_ENDPOINT) for sock in self._sockets
        )
        self._worker = FoldWorker(lambda: self._post("work"), warm=cfg.warmup)
        self._store = open_store(cfg.state_dir)
        read_bundle = None
        if cfg.state_dir is not None:
            notify = self._notify_exec
            self._exec = ExecService(cfg.state_dir, self.app_endpoint, self._store, notify)
            read_bundle = self._exec.read_bundle
        router = Router(cfg, fleet, app, self.stats, self._worker, self._store, read_bundle)
        reader = self._store.reader()
        self._control = Control(control_sock, router, self._exec, reader, self._notify_control)
        self._health = self._checks(self._worker, self._store, self._exec, self._control)
        return router, self._control

    def _checks(
        self, worker: FoldWorker, store: StoreWriter, exe: ExecService | None, ctl: Control
    ) -> Health:
        threads = [
            thread_check("IO loop", lambda: not self._loop_error, lambda: self._loop_error),
            thread_check("fold worker", lambda: worker.alive, lambda: worker.error),
            thread_check("store writer", lambda: store.alive, str),
            thread_check("control", lambda: ctl.alive, str),
        ]
        if exe is not None:
            threads.append(thread_check("exec service", lambda: exe.alive, str))
        return Health(threads, [lambda: store_problem(store.degraded)])

    def _refusing(self) -> str:
        """Why new runs are refused right now ("" when they are not)."""
        return store_problem(self._store.degraded) if self._store is not None else ""

    def _bind_one(
        self, address: str, secure: Callable[[zmq.Socket[bytes]], None] | None
    ) -> zmq.Socket[bytes]:
        sock = bind_router(self._ctx, address, self.config.max_message_bytes, secure)
        self._sockets.append(sock)
        return sock

    def _notify_exec(self) -> None:
        self._post("exec")

    def _notify_control(self) -> None:
        self._post("control")

    def _start_http(self) -> None:
        """Serve the statistics API, /metrics and the dashboard (its own threads)."""
        if not self.config.http_address:
            return
        host, port = parse_http_address(self.config.http_address)
        source = LinkStatsSource(self)
        try:
            self._http = StatsServer(source, host, port).start()
        except ConfigurationError as exc:  # the hub keeps serving federated work without it
            source.close()
            log.error("http_not_started", address=self.config.http_address, error=str(exc))
            return
        self._http_source = source
        self.http_url = self._http.url

    def _close(self) -> None:
        if self._http is not None:
            self._http.stop()
        if self._http_source is not None:
            self._http_source.close()
        if self._exec is not None:
            self._exec.close()
        if self._control is not None:
            self._control.close()
        if self._worker is not None:
            self._worker.close()
        if self._store is not None:
            try:
                self._store.close()
            except FedzeroTimeoutError as exc:  # the disk still refuses: say what is lost
                log.error("store_not_flushed", error=str(exc), pending=self._store.pending)
        for sock in self._sockets:
            sock.close(linger=0)
        self._auth.stop()
        self._ctx.term()
        if self._wake is not None:
            self._wake.close()

    # -------------------------------------------------------------------- loop

    def _loop(self, router: Router, control: Control, wake: WakePipe) -> None:
        fleet, app, control_sock = self._sockets
        guards = self._guards
        handlers = [
            (fleet, guards.framed(fleet, "fleet", router.on_fleet)),
            (app, guards.framed(app, "app", guards.new_runs(app, self._refusing, router.on_app))),
            (control_sock, guards.framed(control_sock, "control", control.on_control)),
        ]
        poller = zmq.Poller()
        poller.register(wake.fileno(), zmq.POLLIN)
        for sock, _ in handlers:
            poller.register(sock, zmq.POLLIN)
        interval = self.config.heartbeat_interval / 2
        if self._notifier.watchdog_interval:  # the loop itself pings: a hung loop is caught
            interval = min(interval, self._notifier.watchdog_interval)
        next_tick = time.monotonic()
        self._on_commands(router)  # what was posted before the loop started
        while not self._stop_requested and not self._drained(router):
            if time.monotonic() >= next_tick:
                self._guards.run("tick", router.tick)
                self._guards.run("control_tick", control.tick)
                self._status = watch(self.health(), self._notifier, self._status)
                next_tick = time.monotonic() + interval
            wait = min(next_tick - time.monotonic(), router.next_deadline())
            events = dict(poller.poll(max(0, int(wait * 1000)) + 1))
            if fleet not in events:  # nothing unread from nodes: silence up to now is theirs
                router.fleet_caught_up(time.monotonic())
            if not events:
                self._guards.run("tick", router.tick)
            if wake.fileno() in events:
                wake.clear()
                self._on_commands(router)
            for sock, handle in handlers:
                if sock in events and drain(sock, handle, limit=_BATCH) < _BATCH and sock is fleet:
                    router.fleet_caught_up(time.monotonic())

    def _drained(self, router: Router) -> bool:
        """Whether a drain is over (idle, or overdue); fail what is left once grace ends."""
        if self._drain_deadline is None:
            return False
        overdue = time.monotonic() - self._drain_deadline
        if router.idle() or overdue > _FINISH_SECS:
            return True
        if overdue >= 0 and not self._failed_all:  # grace is over: fail what is left
            router.fail_all("the link is shutting down")
            self._failed_all = True
        return False

    def _on_commands(self, router: Router) -> None:
        while True:
            try:
                name, argument = self._inbox.get_nowait()
            except queue.Empty:
                return
            if name == "work" and self._worker is not None:
                self._guards.each(self._worker.done, router.rounds.on_worker)
            elif name == "exec" and self._exec is not None:
                self._guards.each(self._exec.done, router.on_exec)
                if self._control is not None:
                    self._guards.run("control_tick", self._control.tick)
            elif name == "control" and self._control is not None:
                self._guards.run("control", self._control.answer)
            elif name == "stop":
                self._stop_requested = True
            elif name == "drain":
                self._start_drain(router, argument)
            elif name == "reload":
                self._reload_keys()
            elif name == "reload_config":
                self._reload_config()

    def _start_drain(self, router: Router, grace: float) -> None:
        if self._drain_deadline is not None:  # asked twice (a second Ctrl-C): stop now
            self._drain_deadline = time.monotonic()
            return
        self._drain_deadline = time.monotonic() + grace
        router.draining = True
        self._notifier.stopping(f"draining: {router.pending_count} pending")
        log.info("link_draining", grace_secs=grace, pending=router.pending_count)

    # ------------------------------------------------------------ inspection

    def node_ids(self, online_only: bool = True) -> list[int]:
        """Ids of registered nodes (a snapshot, safe from any thread)."""
        # dict.copy() runs under the GIL in one step: safe while the IO thread mutates.
        nodes = list(self._router.nodes.copy().values()) if self._router else []
        return sorted(n.node_id for n in nodes if n.online or not online_only)

    @property
    def credit_high_water(self) -> int:
        """Most large uploads the link ever admitted at once."""
        return self._router.credit.high_water if self._router else 0

    def runs(self) -> list[Run]:
        """A snapshot of the runs (safe from any thread)."""
        return list(self._router.runs.copy().values()) if self._router else []

    @property
    def credit_in_flight(self) -> int:
        """Large uploads admitted right now."""
        return self._router.credit.in_flight if self._router else 0
