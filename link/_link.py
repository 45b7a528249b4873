"""The link: a single IO thread that serves nodes and ServerApps.

One thread owns the fleet ROUTER (nodes), the app ROUTER (ServerApps) and a
wake-up socket, and never blocks on anything but ``zmq.poll``; the
:class:`~fedzero.link.routing._router.Router` it drives holds all state.
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

from fedzero.core import ConfigurationError, configure_logging
from fedzero.core.runtime import (
    CurveKeys,
    Notifier,
    apply_server_curve,
    bind_router,
    check_public_bind,
    is_loopback,
    load_config,
)

from ._config import LinkConfig
from ._state import Run
from .exec import Control, ExecService
from .rounds import FoldWorker
from .routing import Router
from .store import InMemoryStore, LinkStore, SqliteStore, StoreReader, StoreWriter

log = structlog.get_logger(__name__)

_BATCH: Final = 256  # messages handled per socket per loop turn (fairness)
_FINISH_SECS: Final = 5.0  # after the drain grace: time to deliver failed rounds' results


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
        self._wake_address = f"inproc://fedzero-link-wake-{id(self):x}"
        self.stats: Counter[str] = Counter()
        """Event counters (replies, drops by reason, malformed input, ...)."""
        self.startup_error: BaseException | None = None
        """Why :meth:`run` returned without serving (bind or key errors), if it did."""
        self.fleet_endpoint = ""
        self.app_endpoint = ""
        self._router: Router | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_requested = False
        self._drain_deadline: float | None = None
        self._auth: Any = None
        self._sockets: list[zmq.Socket[bytes]] = []
        self._worker: FoldWorker | None = None
        self._exec: ExecService | None = None
        self._control: Control | None = None
        self.control_endpoint = ""
        self.http_url = ""
        self._http: Any = None
        self._http_source: Any = None
        self._store: StoreWriter | None = None

    # --------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 10.0) -> Link:
        """Run the link in a background thread; return once it serves.

        Raises:
            ConfigurationError: an address cannot be bound, or keys are invalid.
        """
        self._thread = threading.Thread(target=self.run, name="fedzero-link", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("link did not start")
        if self.startup_error is not None:
            self._thread.join()
            raise self.startup_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (from any thread) and wait for it to close its sockets."""
        self._post(b"stop")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def drain(self, grace: float) -> None:
        """Stop taking work; finish in-flight messages within ``grace`` seconds, then stop.

        New runs and new pushes are refused (``RUN_STOPPED``); what is still
        pending when the grace period ends is failed with ``RUN_STOPPED``. Safe
        from any thread and from a signal handler; :meth:`run` then returns.
        """
        self._post(b"drain %f" % max(0.0, grace))

    def reload_keys(self) -> None:
        """Re-read the allowed node keys directory (safe from any thread)."""
        self._post(b"reload")

    def reload(self, config_file: Path | None, flags: Mapping[str, Any]) -> None:
        """SIGHUP: re-read the configuration; apply the log level and the allowed keys.

        Other settings need a restart (their new values are ignored, with a log line).
        """
        self._notifier.reloading()
        try:
            fresh = load_config(LinkConfig, "link", config_file=config_file, overrides=flags)
        except ConfigurationError as exc:
            log.error("reload_failed", error=str(exc))
        else:
            configure_logging(fresh.log_level)
            self.config.log_level = fresh.log_level
            log.info("config_reloaded", log_level=fresh.log_level)
        self.reload_keys()
        self._notifier.ready()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the link serves (or failed to start)."""
        return self._ready.wait(timeout)

    def _post(self, command: bytes) -> None:
        sock = self._ctx.socket(zmq.PUSH)
        try:
            sock.connect(self._wake_address)
            sock.send(command)
        finally:
            sock.close(linger=1000)

    def run(self) -> None:
        """Serve until :meth:`stop`: bind, loop, then close everything."""
        wake = self._ctx.socket(zmq.PULL)
        wake.bind(self._wake_address)
        try:
            router = self._bind()
        except BaseException as exc:
            self.startup_error = exc
            self._ready.set()
            wake.close(linger=0)
            self._close()
            return
        self._router = router
        self._start_http()
        self._ready.set()
        self._notifier.ready(f"serving: fleet {self.fleet_endpoint}, app {self.app_endpoint}")
        log.info("link_started", fleet=self.fleet_endpoint, app=self.app_endpoint,
                 curve=self.config.curve_enabled)  # fmt: skip
        try:
            self._loop(wake, router)
            router.close_runs("the link shut down")
        finally:
            wake.close(linger=0)
            self._close()
            log.info("link_stopped", **dict(self.stats))

    def _bind(self) -> Router:
        cfg = self.config
        check_public_bind(cfg.fleet_address, cfg.curve_enabled, "fleet")
        check_public_bind(cfg.app_address, False, "app")
        if not cfg.control_curve_enabled and not is_loopback(cfg.control_address):
            raise ConfigurationError(
                f"control_address: {cfg.control_address} is not loopback; whoever reaches the "
                "control endpoint can run code here, so it needs control_allowed_keys_dir "
                "(CURVE with allow-listed user keys) to be bound off this machine"
            )
        fleet = bind_router(self._ctx, cfg.fleet_address, cfg.max_message_bytes, self._security())
        self._sockets.append(fleet)
        app = bind_router(self._ctx, cfg.app_address, cfg.max_message_bytes, None)
        self._sockets.append(app)
        self.fleet_endpoint = fleet.getsockopt_string(zmq.LAST_ENDPOINT)
        self.app_endpoint = app.getsockopt_string(zmq.LAST_ENDPOINT)
        control_sock = bind_router(self._ctx, cfg.control_address, cfg.max_message_bytes,
                                   self._control_security())  # fmt: skip
        self._sockets.append(control_sock)
        self.control_endpoint = control_sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._worker = FoldWorker(self._ctx, self._wake_address, warm=cfg.warmup)
        self._store = self._open_store()
        router = Router(cfg, fleet, app, self.stats, self._worker, self._store)
        if cfg.state_dir is not None:
            self._exec = ExecService(cfg.state_dir, self.app_endpoint, self._store,
                                     self._ctx, self._wake_address)  # fmt: skip
            router.read_bundle = self._exec.read_bundle
        self._control = Control(control_sock, router, self._exec, self._store.reader())
        return router

    def _start_http(self) -> None:
        """Serve the statistics API, /metrics and the dashboard (its own threads)."""
        from .http import LinkStatsSource, StatsServer, parse_http_address

        if not self.config.http_address:
            return
        host, port = parse_http_address(self.config.http_address)
        source = LinkStatsSource(self)
        try:
            self._http = StatsServer(source, host, port).start()
        except OSError as exc:  # the hub keeps serving federated work without its dashboard
            source.close()
            log.error("http_not_started", address=self.config.http_address, error=str(exc))
            return
        self._http_source = source
        self.http_url = self._http.url

    def _open_store(self) -> StoreWriter:
        """Open the state (SQLite under state_dir, else memory); close what a crash left open."""
        cfg = self.config
        store: LinkStore
        if cfg.state_dir is not None:
            cfg.state_dir.mkdir(parents=True, exist_ok=True)
            store = SqliteStore(cfg.state_dir / "link.db")
        else:
            store = InMemoryStore()
        now = time.time()
        for run_id in store.mark_interrupted(now):
            store.add_event("run_ended", now, run_id=run_id, data={"status": "interrupted"})
            log.warning("run_interrupted", run_id=run_id, reason="the link stopped during the run")
        store.mark_nodes_offline(now)
        return StoreWriter(store)

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until every state write queued so far is committed (any thread).

        Raises:
            FedzeroTimeoutError: not committed within ``timeout`` seconds.
        """
        if self._store is not None:
            self._store.flush(timeout)

    def store_reader(self) -> StoreReader:
        """A reader of the link's state, usable from another thread (stats, CLI)."""
        if self._store is None:
            raise RuntimeError("the link is not running")
        return self._store.reader()

    def _authenticator(self) -> Any:
        """The ZAP handler (started once): fleet keys in domain "*", users in "control"."""
        if self._auth is None:
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self._ctx)
            self._auth.start()
        return self._auth

    def _security(self) -> Callable[[zmq.Socket[bytes]], None] | None:
        cfg = self.config
        if not cfg.curve_enabled or cfg.curve_secret_key is None:
            return None
        keys = CurveKeys.load(cfg.curve_secret_key)
        if cfg.allowed_keys_dir is None or not cfg.allowed_keys_dir.is_dir():
            raise ConfigurationError(f"allowed_keys_dir: {cfg.allowed_keys_dir} is not a directory")
        self._authenticator().configure_curve(domain="*", location=str(cfg.allowed_keys_dir))
        return lambda sock: apply_server_curve(sock, keys)

    def _control_security(self) -> Callable[[zmq.Socket[bytes]], None] | None:
        cfg = self.config
        folder = cfg.control_allowed_keys_dir
        if not cfg.control_curve_enabled or cfg.curve_secret_key is None or folder is None:
            return None
        if not folder.is_dir():
            raise ConfigurationError(f"control_allowed_keys_dir: {folder} is not a directory")
        keys = CurveKeys.load(cfg.curve_secret_key)
        self._authenticator().configure_curve(domain="control", location=str(folder))

        def secure(sock: zmq.Socket[bytes]) -> None:
            apply_server_curve(sock, keys)
            sock.zap_domain = b"control"

        return secure

    def _close(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http_source.close()
        if self._exec is not None:
            self._exec.close()
        if self._worker is not None:
            self._worker.close()
        if self._store is not None:
            self._store.close()
        for sock in self._sockets:
            sock.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    # -------------------------------------------------------------------- loop

    def _loop(self, wake: zmq.Socket[bytes], router: Router) -> None:
        fleet, app, control_sock = self._sockets
        poller = zmq.Poller()
        for sock in (wake, fleet, app, control_sock):
            poller.register(sock, zmq.POLLIN)
        interval = self.config.heartbeat_interval / 2
        if self._notifier.watchdog_interval:  # the loop itself pings: a hung loop is caught
            interval = min(interval, self._notifier.watchdog_interval)
        next_tick = time.monotonic()
        failed_all = False
        while not self._stop_requested:
            if self._drain_deadline is not None:
                overdue = time.monotonic() - self._drain_deadline
                if router.idle() or overdue > _FINISH_SECS:
                    break
                if overdue >= 0 and not failed_all:  # grace is over: fail what is left
                    router.fail_all("the link is shutting down")
                    failed_all = True
            if time.monotonic() >= next_tick:
                router.tick()
                if self._control is not None:
                    self._control.tick()
                self._notifier.watchdog()
                next_tick = time.monotonic() + interval
            wait = min(next_tick - time.monotonic(), router.next_deadline())
            events = dict(poller.poll(max(0, int(wait * 1000)) + 1))
            if not events:
                router.tick()
            if wake in events:
                self._on_wake(wake)
            if fleet in events:
                _drain(fleet, router.on_fleet, self.stats)
            if app in events:
                _drain(app, router.on_app, self.stats)
            if control_sock in events and self._control is not None:
                _drain(control_sock, self._control.on_control, self.stats)

    def _on_wake(self, wake: zmq.Socket[bytes]) -> None:
        while True:
            try:
                command = wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if command == b"work" and self._router is not None:
                while True:
                    try:
                        outcome = self._worker.done.get_nowait() if self._worker else None
                    except queue.Empty:
                        break
                    if outcome is not None:
                        self._router.rounds.on_worker(outcome)
            elif command == b"exec" and self._exec is not None and self._router is not None:
                while True:
                    try:
                        outcome = self._exec.done.get_nowait()
                    except queue.Empty:
                        break
                    self._router.on_exec(outcome)
                if self._control is not None:
                    self._control.tick()
            elif command == b"stop":
                self._stop_requested = True
            elif command.startswith(b"drain ") and self._router is not None:
                grace = float(command.split()[1])
                if self._drain_deadline is None:
                    self._drain_deadline = time.monotonic() + grace
                    self._router.draining = True
                    self._notifier.stopping(f"draining: {self._router.pending_count} pending")
                    log.info("link_draining", grace_secs=grace, pending=self._router.pending_count)
                else:  # asked twice (a second Ctrl-C): stop now
                    self._drain_deadline = time.monotonic()
            elif command == b"reload" and self._auth is not None:
                cfg = self.config
                if cfg.curve_enabled:
                    self._auth.configure_curve(domain="*", location=str(cfg.allowed_keys_dir))
                if cfg.control_curve_enabled:
                    self._auth.configure_curve(
                        domain="control", location=str(cfg.control_allowed_keys_dir)
                    )
                log.info("allowed_keys_reloaded", fleet=str(cfg.allowed_keys_dir),
                         control=str(cfg.control_allowed_keys_dir))  # fmt: skip

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


def _drain(
    sock: zmq.Socket[bytes],
    handle: Callable[[bytes, list[zmq.Frame]], None],
    stats: Counter[str],
) -> None:
    for _ in range(_BATCH):
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        if len(frames) < 2:
            stats["malformed"] += 1
            continue
        handle(frames[0].bytes, frames[1:])
