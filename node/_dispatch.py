"""Tasks from the link to the run's ClientApp, and replies back under upload credit.

The agent's IO thread hands the link's run messages (``run``, ``run_end``), tasks
(``message``), bundles, credit grants and refusals to a :class:`TaskDispatcher`.
A task goes to the runner (threads or worker processes) with its run's Context,
once its app is known: a node without an app of its own first fetches the run's
bundle from the link (the task waits for the install). A reply larger than the
link's credit threshold is announced with a ``credit_request`` and sent when the
link grants it, so a thousand nodes replying at once cannot swamp the link.

A task the node cannot hand to its runner (whatever the cause) is answered with
an error reply; it never ends the IO thread. A run's ClientApp ends with the
run: at ``run_end``, and at a welcome that follows a reconnect (a link that
restarted has no runs; one that only lost this node announces its runs again,
with ``run``, before their next task).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import zmq

from fedzero.core import ClosedError, Context, Error, ErrorCode, Message, encode
from fedzero.core.bundles import BundleError
from fedzero.core.wire import control

from ._bundles import BundleFetcher
from ._connection import LinkConnection
from ._runner import Outgoing, Runner
from ._tasks import failure_reply

log = structlog.get_logger(__name__)

DEFAULT_CREDIT_THRESHOLD = 2**20
"""Replies above this many bytes wait for credit (until the welcome says otherwise)."""


class TaskDispatcher:
    """Runs the link's tasks and sends their replies (IO thread only).

    Args:
        conn: the connection to the link (node id, node config, sending).
        fetcher: fetches each run's app bundle (None: the node has its own app).
        draining: whether the node is shutting down (new tasks are refused).
    """

    def __init__(
        self,
        conn: LinkConnection,
        fetcher: BundleFetcher | None,
        draining: Callable[[], bool],
    ) -> None:
        self._conn = conn
        self._fetcher = fetcher
        self._draining = draining
        self._runner: Runner | None = None
        self._contexts: dict[int, Context] = {}
        self._run_bundles: dict[int, str] = {}
        self._awaiting_credit: dict[str, list[Any]] = {}
        self._credit_threshold = DEFAULT_CREDIT_THRESHOLD

    # --------------------------------------------------------------- lifecycle

    def start(self, runner: Runner) -> list[zmq.Socket[bytes] | int]:
        """Run tasks with ``runner`` from now on; returns what the IO thread must poll."""
        self._runner = runner
        return runner.pollables()

    @property
    def _running(self) -> Runner:
        if self._runner is None:
            raise ClosedError("the node agent is not running")
        return self._runner

    def unfinished(self) -> int:
        """Tasks accepted and not yet answered (running, queued, or waiting for a bundle)."""
        waiting = self._fetcher.waiting_tasks if self._fetcher is not None else 0
        return self._running.in_flight + waiting

    def next_due(self) -> float | None:
        """The earliest deadline of a task at the runner (monotonic), if any."""
        return self._running.next_due()

    def idle(self) -> bool:
        """Nothing left to answer or to send."""
        return self.unfinished() == 0 and not self._awaiting_credit

    def close(self, timeout: float) -> None:
        """Stop the runner (waiting up to ``timeout``) and remove the private bundle cache."""
        if self._runner is not None:
            self._runner.close(timeout)
        if self._fetcher is not None:
            self._fetcher.close()

    # ------------------------------------------------------- from the link

    def on_welcome(self, node_id: int, credit_threshold: int, *, rejoined: bool) -> None:
        """(Re-)registered: adopt the credit rule; the runs' Contexts take the node id.

        Args:
            node_id: the id the link gave this node.
            credit_threshold: replies above this many bytes wait for credit.
            rejoined: the welcome follows a reconnect (or a ``reregister``): every
                run ends here (their ClientApps with them); the runs the link still
                has are announced again before their next task.
        """
        self._credit_threshold = credit_threshold
        if rejoined:
            for run_id in sorted(self._contexts):
                self.on_run_end(run_id, "the link registered this node anew")
        for ctx in self._contexts.values():
            ctx.node_id = node_id

    def on_reconnect(self) -> None:
        """A fresh socket: replies waiting for credit on the old one are gone with it."""
        self._awaiting_credit.clear()

    def on_run(self, header: dict[str, Any]) -> None:
        """A run this node takes part in: its config and its app bundle."""
        run_id = header["run_id"]
        bundle = header.get("bundle")
        self._run_bundles[run_id] = bundle if isinstance(bundle, str) else ""
        ctx = self._contexts.get(run_id)
        if ctx is None:
            self._contexts[run_id] = Context(
                run_id=run_id,
                node_id=self._conn.node_id or 0,
                node_config=dict(self._conn.node_config),
                run_config=header["run_config"],
            )
        else:
            ctx.run_config = header["run_config"]

    def on_run_end(self, run_id: int, why: str = "the run ended") -> None:
        """The run is over: forget its Context and end its ClientApp now."""
        self._contexts.pop(run_id, None)
        self._run_bundles.pop(run_id, None)
        if self._runner is not None:
            self._runner.end_run(run_id, why)
        log.info("run_ended", run_id=run_id, reason=why)

    def on_task(self, msg: Message, frames: list[zmq.Frame]) -> None:
        """Run a task for its run (``frames``: what it was decoded from, forwarded as is).

        Whatever goes wrong on the way to the runner becomes the task's error reply.
        """
        try:
            self._start_task(msg, frames)
        except Exception as exc:
            prefix = "the node could not run the task: "
            reply = failure_reply(msg, ErrorCode.UNKNOWN, "task_failed", exc, prefix)
            self._send_outgoing([Outgoing(msg.metadata.message_id, encode(reply))])

    def _start_task(self, msg: Message, frames: list[zmq.Frame]) -> None:
        meta = msg.metadata
        if meta.dst_node_id != self._conn.node_id or meta.is_expired():
            log.warning("task_dropped", message_id=meta.message_id, expired=meta.is_expired())
            return
        if self._draining():
            self._fail(msg, ErrorCode.RUN_STOPPED, "the node is shutting down")
            return
        ctx = self._contexts.get(meta.run_id)
        if ctx is None:
            ctx = Context(meta.run_id, meta.dst_node_id, node_config=dict(self._conn.node_config))
            self._contexts[meta.run_id] = ctx
        app_dir: Path | None = None
        if self._fetcher is not None:
            app_dir = self._bundle_app(self._fetcher, msg, frames)
            if app_dir is None:  # failed, or waiting for its bundle
                return
        self._send_outgoing(self._running.submit(msg, ctx, frames, app_dir))

    def _bundle_app(
        self, fetcher: BundleFetcher, msg: Message, frames: list[zmq.Frame]
    ) -> Path | None:
        """The run's installed app folder; None when the task failed or waits for it."""
        bundle = self._run_bundles.get(msg.metadata.run_id, "")
        if not bundle:
            reason = "this node runs apps from bundles; the run has none"
            self._fail(msg, ErrorCode.UNSUPPORTED, reason)
            return None
        found = fetcher.app_dir(bundle)
        if isinstance(found, BundleError):
            self._fail(msg, ErrorCode.UNAUTHORIZED, str(found))
            return None
        if found is None and fetcher.wait_for(bundle, (msg, frames)):
            self._conn.send(control("get_bundle", hash=bundle))
        return found

    def on_bundle(self, header: dict[str, Any], frames: list[zmq.Frame]) -> None:
        """A bundle the node asked for: install it (in the background)."""
        if self._fetcher is not None and len(frames) == 2:
            self._fetcher.install(header["hash"], frames[1].bytes)

    def on_credit_grant(self, reply_to: str) -> None:
        """The link admits the upload of the reply to ``reply_to``: send it."""
        pending = self._awaiting_credit.pop(reply_to, None)
        if pending is not None:
            self._conn.send(pending)

    def on_refused(self, header: dict[str, Any]) -> None:
        """The link refused something of ours (e.g. a reply's upload)."""
        reply_to = header.get("reply_to")
        if isinstance(reply_to, str):
            self._awaiting_credit.pop(reply_to, None)
        log.warning("link_refused", code=header["code"], reason=header["reason"], reply_to=reply_to)

    # ------------------------------------------------------------- replies

    def collect(self, ready: set[Any]) -> None:
        """Send what the runner finished; start the tasks whose bundle is installed."""
        self._send_outgoing(self._running.collect(ready, time.monotonic()))
        if self._fetcher is None:
            return
        for bundle in self._fetcher.finished():
            for msg, frames in self._fetcher.waiting.pop(bundle, []):
                self.on_task(msg, frames)

    def _fail(self, msg: Message, code: ErrorCode, reason: str) -> None:
        reply = encode(msg.create_error_reply(Error(code, reason)))
        self._send_outgoing([Outgoing(msg.metadata.message_id, reply)])

    def _send_outgoing(self, replies: list[Outgoing]) -> None:
        for reply in replies:
            if reply.nbytes > self._credit_threshold:
                self._awaiting_credit[reply.reply_to] = reply.frames
                ask = control("credit_request", reply_to=reply.reply_to, nbytes=reply.nbytes)
                self._conn.send(ask)
            elif not self._conn.send(reply.frames):
                log.warning("reply_not_sent", reply_to=reply.reply_to)
