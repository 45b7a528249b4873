"""How the link's IO loop contains failures, and gates new runs while its store cannot write.

Every handler the loop calls goes through :class:`Guards`: an exception fails
the message (the peer gets ``refused`` with the cause) or the one outcome at
fault, is logged with its traceback and counted (``handler_errors``), and the
loop goes on serving everyone else.
"""

from __future__ import annotations

import contextlib
import functools
import queue
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
import zmq

from fedzero.core import DeserializationError, ErrorCode
from fedzero.core.wire import control, parse_envelope

log = structlog.get_logger(__name__)

Handler = Callable[[bytes, list[zmq.Frame]], None]


class Guards:
    """Wraps the IO loop's handlers so that none of them can end the loop.

    Args:
        stats: the link's counters (``handler_errors``, ``runs_refused_degraded``).
    """

    def __init__(self, stats: Counter[str]) -> None:
        self._stats = stats

    def run(self, what: str, work: Callable[[], None]) -> None:
        """Run ``work``; an exception is logged and counted, never raised."""
        try:
            work()
        except Exception as exc:
            self._stats["handler_errors"] += 1
            log.exception("handler_failed", handler=what, error=f"{type(exc).__name__}: {exc}")

    def each(
        self, outcomes: queue.SimpleQueue[tuple[Any, ...]], handle: Callable[[Any], None]
    ) -> None:
        """Hand every outcome queued now to ``handle``, each one contained."""
        while True:
            try:
                outcome = outcomes.get_nowait()
            except queue.Empty:
                return
            self.run(str(outcome[0]), functools.partial(handle, outcome))

    def framed(
        self, sock: zmq.Socket[bytes], endpoint: str, handle: Handler
    ) -> Callable[[list[zmq.Frame]], None]:
        """A handler of ROUTER messages: the peer's routing id, then at least one frame.

        An exception in ``handle`` fails that message alone: the peer is told
        (``refused`` with the cause), the log says what broke, the loop goes on.
        """

        def on_message(frames: list[zmq.Frame]) -> None:
            if len(frames) < 2:
                self._stats["malformed"] += 1
                return
            rid = frames[0].bytes
            try:
                handle(rid, frames[1:])
            except Exception as exc:
                cause = f"{type(exc).__name__}: {exc}"
                self._stats["handler_errors"] += 1
                log.exception("handler_failed", endpoint=endpoint, error=cause)
                reason = f"the link failed to handle this message ({cause:.300})"
                send(sock, rid, control("refused", code=int(ErrorCode.UNKNOWN), reason=reason))

        return on_message

    def new_runs(
        self, sock: zmq.Socket[bytes], problem: Callable[[], str], handle: Handler
    ) -> Handler:
        """The app endpoint's handler: while ``problem()`` says why, new runs are refused."""

        def on_app(rid: bytes, frames: list[zmq.Frame]) -> None:
            why = problem()
            if why and _is_new_run(frames):
                self._stats["runs_refused_degraded"] += 1
                reason = f"{why}: the link refuses new runs until it can"
                log.warning("run_refused", reason=reason)
                send(sock, rid, control("refused", code=int(ErrorCode.OVERLOADED), reason=reason))
                return
            handle(rid, frames)

        return on_app


def send(sock: zmq.Socket[bytes], rid: bytes, frames: list[Any]) -> None:
    """Send to a peer that may be gone (then nothing happens)."""
    with contextlib.suppress(zmq.ZMQError):
        sock.send_multipart([rid, *frames])


def store_problem(degraded: str) -> str:
    """Why new runs are refused, from the store writer's ``degraded`` ("" if they are not)."""
    return f"the state store cannot write ({degraded})" if degraded else ""


def _is_new_run(frames: list[zmq.Frame]) -> bool:
    """Whether a ServerApp's message asks for a new run (``app_hello`` without a run id)."""
    try:
        kind, header, _ = parse_envelope(frames)
    except DeserializationError:
        return False
    return kind == "app_hello" and header.get("run_id") is None
