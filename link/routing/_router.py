"""The router: the link's state machine for nodes, runs and messages.

It is driven by the link's IO thread alone (no locks): :meth:`Router.on_fleet`
and :meth:`Router.on_app` for each received message, :meth:`Router.on_exec`
for what the exec service reports, :meth:`Router.tick` for timers. Tensor
frames are relayed as views of the received buffers: a push from a ServerApp
is received once and its payload frames are sent to every destination node
without copying.

The work is split by responsibility: :class:`~._fleet.FleetSide` (nodes),
:class:`~._apps.AppSide` (ServerApps), :class:`~._runs.RunLifecycle` (runs),
over the shared state and replies of :class:`~._core.RoutingCore`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

import zmq

from fedzero.core import ConfigurationError, ErrorCode
from fedzero.core.runtime import is_loopback

from .._config import LinkConfig
from .._state import Node, Run, RunStatus
from ..rounds import FoldWorker, RoundBook
from ..store import StoreWriter
from ._apps import AppSide
from ._core import RoutingCore
from ._credit import CreditWindow
from ._fleet import FleetSide
from ._runs import RunLifecycle

_TRAFFIC_SECS: Final = 5.0  # node byte counters and last-seen are recorded this often


class Router:
    """Routes messages between ServerApps (app socket) and nodes (fleet socket).

    Args:
        config: the link's settings.
        fleet: the bound fleet ROUTER (nodes).
        app: the bound app ROUTER (ServerApps).
        stats: counters shared with the link.
        worker: the fold worker that aggregates rounds.
        store: where runs, rounds, nodes and events are recorded (writes are
            queued to the store's own thread: the IO loop never waits on disk).
        read_bundle: reads a stored bundle for a node (the exec service's),
            answered through :meth:`on_exec`; None: the link serves no bundles.
    """

    def __init__(
        self,
        config: LinkConfig,
        fleet: zmq.Socket[bytes],
        app: zmq.Socket[bytes],
        stats: Counter[str],
        worker: FoldWorker,
        store: StoreWriter,
        read_bundle: Callable[[bytes, str], None] | None = None,
    ) -> None:
        if config.curve_enabled and not is_loopback(config.app_address):
            raise ConfigurationError(
                f"app_address: {config.app_address} is not loopback or ipc; on a CURVE link "
                "the app endpoint (unauthenticated, where ServerApps attach) stays on this machine"
            )
        self._core = RoutingCore(config, fleet, app, stats, worker, store)
        self._runs = RunLifecycle(self._core)
        self._apps = AppSide(self._core, self._runs)
        self._fleet = FleetSide(self._core, read_bundle, self._apps.answer_node_waiters)
        self._traffic_at = 0.0

    # ------------------------------------------------------------------ state

    @property
    def nodes(self) -> dict[int, Node]:
        """Registered nodes by id (IO thread; copy it to read from another thread)."""
        return self._core.nodes

    @property
    def runs(self) -> dict[int, Run]:
        """Runs by id (IO thread; copy it to read from another thread)."""
        return self._core.runs

    @property
    def credit(self) -> CreditWindow:
        """The upload credit window."""
        return self._core.credit

    @property
    def rounds(self) -> RoundBook:
        """Aggregated rounds in progress."""
        return self._core.rounds

    @property
    def store(self) -> StoreWriter:
        """Where the state is recorded."""
        return self._core.store

    @property
    def draining(self) -> bool:
        """Whether the link drains: new runs and pushes are refused."""
        return self._core.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._core.draining = value

    @property
    def pending_count(self) -> int:
        """Messages delivered to nodes and not yet answered."""
        return len(self._core.pending)

    def idle(self) -> bool:
        """Whether nothing is in flight: no pending message, no unfinished round."""
        return not self._core.pending and not self._core.rounds

    # --------------------------------------------------------------- messages

    def on_fleet(self, rid: bytes, frames: list[zmq.Frame]) -> None:
        """Handle one message from a node."""
        self._fleet.on_message(rid, frames)

    def on_app(self, rid: bytes, frames: list[zmq.Frame]) -> None:
        """Handle one message from a ServerApp."""
        self._apps.on_message(rid, frames)

    def on_exec(self, outcome: tuple[Any, ...]) -> None:
        """The exec service read a bundle for a node, or a run's ServerApp exited."""
        if outcome[0] == "bundle":
            _, rid, bundle_hash, data = outcome
            self._fleet.send_bundle(rid, bundle_hash, data)
        elif outcome[0] == "exited":
            _, run_id, code, error, traceback_text = outcome
            self._runs.on_exited(run_id, code, error, traceback_text)

    # ------------------------------------------------------------------- runs

    def create_run(self, run_config: dict[str, Any], app: str, bundle_hash: str) -> Run:
        """Start a run (for an in-process ServerApp, or one the exec service starts)."""
        return self._runs.create(run_config, app, bundle_hash)

    def stop_run(self, run: Run, reason: str) -> None:
        """End a run now: its messages are dropped and its nodes told (``fedzero stop``)."""
        self._runs.end(run, RunStatus.STOPPED, reason)

    def close_runs(self, reason: str) -> None:
        """Record every running run as interrupted (the link is going away)."""
        self._runs.close_all(reason)

    def keys_reloaded(self) -> None:
        """The allowed node keys were re-read: nodes whose key was revoked are cut off."""
        self._fleet.registration.keys_reloaded()

    def fail_all(self, reason: str) -> None:
        """Fail everything in flight with ``RUN_STOPPED`` (shutdown after the grace period)."""
        core = self._core
        for entry in core.pending.pop_expired(float("inf")):
            core.credit.release(entry.message_id)
            core.fail(entry, ErrorCode.RUN_STOPPED, reason)
        core.rounds.check_all(force=True)

    # ----------------------------------------------------------------- timers

    def tick(self) -> None:
        """Run the timers: liveness, expiry, waiting get_nodes calls, round deadlines."""
        now = time.monotonic()
        self._fleet.check_liveness(now)
        self._core.expire(time.time())
        self._apps.answer_node_waiters(now)
        self._apps.check_apps(now)
        self._core.rounds.check_all()
        if now >= self._traffic_at:  # byte counters and last-seen, not on every heartbeat
            self._traffic_at = now + _TRAFFIC_SECS
            self._fleet.registration.log_registered()
            self._fleet.record_traffic()
            self._runs.record_traffic()
            self._fleet.registration.forget_offline(now)

    def fleet_caught_up(self, at: float) -> None:
        """The IO thread had read every message the fleet socket held at ``at`` (monotonic).

        Liveness judges a node's silence up to this moment only: pings the link
        has not read yet are not silence.
        """
        self._core.liveness.caught_up = at

    @property
    def online_count(self) -> int:
        """Nodes online now."""
        return self._core.online

    def next_deadline(self) -> float:
        """Seconds until the earliest timer that needs :meth:`tick` (may be negative)."""
        wait = self._apps.next_waiter_deadline()
        expiry = self._core.pending.next_expiry()
        if expiry is not None:
            wait = min(wait, expiry - time.time())
        return min(wait, self._core.rounds.next_deadline())
