"""systemd's notify protocol (``sd_notify``), in plain Python, without libsystemd.

A service with ``Type=notify`` tells systemd how it is doing by sending small
datagrams of newline-separated ``KEY=value`` assignments to the AF_UNIX socket
named by ``$NOTIFY_SOCKET``. This module sends the few a daemon needs:

- ``READY=1``: start-up finished, the daemon serves (``systemctl start``
  returns, units ordered after it start);
- ``STATUS=...``: a one-line status shown by ``systemctl status``;
- ``WATCHDOG=1``: "still alive"; with ``WatchdogSec=`` systemd restarts the
  service when these stop for that long;
- ``RELOADING=1``: a reload (SIGHUP) began; send ``READY=1`` when it is done;
- ``STOPPING=1``: shutdown began (draining);
- ``EXTEND_TIMEOUT_USEC=...``: more time to start, stop or reload, please.

How a daemon uses it::

    notifier = Notifier.from_env(unset_environment=True)
    period = notifier.watchdog_interval          # None without WatchdogSec=
    ...bind sockets, open state...
    notifier.ready("serving fleet on tcp://0.0.0.0:9092")
    while running:                               # the IO loop
        poll(timeout=min(poll_timeout, period or poll_timeout))
        if period is not None and now() >= next_ping:
            notifier.watchdog()                  # from the IO loop itself, so a
            next_ping = now() + period           # wedged loop stops the pings
    notifier.stopping()
    ...drain...

Ping the watchdog from the loop whose liveness it should prove (the IO loop),
never from a helper thread: a thread that pings while the loop is stuck hides
exactly the hang the watchdog is there to catch.

Without ``$NOTIFY_SOCKET`` (not run by systemd, or ``Type=simple``) every method
is a no-op that returns ``False``. Sending never blocks and never raises: a
failure is logged once, as a warning, and reported by the return value.

A full notify socket (the kernel queues only ``net.unix.max_dgram_qlen``
datagrams, often 10, while systemd is busy) must not lose a state change: a
datagram other than a bare ``WATCHDOG=1`` that meets a full queue is kept, in
order, and sent again from a retry thread (back-off from 20 ms to 1 s) before
anything newer; a ping that meets a full queue, or pending state, is dropped
(the next one follows within a period, and a ping never overtakes a state
change it was sent after).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)

_ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
_PING = b"WATCHDOG=1"
_MAX_PENDING = 64  # state datagrams kept while the queue is full (oldest dropped)
_RETRY_FIRST, _RETRY_MAX = 0.02, 1.0  # seconds between attempts to send them


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Return how often to ping systemd's watchdog, in seconds, or None.

    systemd sets ``$WATCHDOG_USEC`` (the ``WatchdogSec=`` timeout) and
    ``$WATCHDOG_PID`` (the process it is meant for) for a service with a
    watchdog. The recommended ping period is half the timeout, which is what
    this returns.

    Args:
        environ: the environment to read; default :data:`os.environ`.

    Returns:
        Half the watchdog timeout in seconds; None when no watchdog is set, the
        value is malformed, or ``$WATCHDOG_PID`` names another process (a child
        that inherited the variables must not ping on its parent's behalf).
    """
    env = os.environ if environ is None else environ
    raw_usec = env.get("WATCHDOG_USEC", "").strip()
    if not raw_usec:
        return None
    raw_pid = env.get("WATCHDOG_PID", "").strip()
    if raw_pid:
        try:
            if int(raw_pid) != os.getpid():
                return None
        except ValueError:
            log.warning("systemd_watchdog_pid_invalid", watchdog_pid=raw_pid)
            return None
    try:
        usec = int(raw_usec)
    except ValueError:
        usec = 0
    if usec <= 0:
        log.warning("systemd_watchdog_usec_invalid", watchdog_usec=raw_usec)
        return None
    return usec / 2 / 1_000_000


def _socket_address(value: str) -> bytes | None:
    """Turn ``$NOTIFY_SOCKET`` into a sendto() address; None if unsupported."""
    if value.startswith("@"):  # abstract namespace: leading NUL instead of '@'
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return os.fsencode(value)
    return None  # e.g. systemd >= 254's "vsock:CID:PORT", or a relative path


class Notifier:
    """Sends readiness, status and watchdog notifications to systemd.

    Create one with :meth:`from_env` at daemon start-up. Every method returns
    True when the datagram was handed to the socket, False when notifications
    are disabled or sending failed. It is safe to call from any thread (each
    send uses its own short-lived socket, as ``sd_notify`` does).

    Attributes:
        address: the ``$NOTIFY_SOCKET`` value this notifier sends to, or None
            when it is a no-op.
        watchdog_interval: seconds between :meth:`watchdog` pings (half of
            ``WatchdogSec=``), or None when systemd runs no watchdog for us.
    """

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        self.address = address or None
        self.watchdog_interval = watchdog_interval
        self._target = _socket_address(address) if address else None
        self._warned = False
        self._lock = threading.Lock()
        self._pending: deque[bytes] = deque(maxlen=_MAX_PENDING)
        self._retrying = False
        if address and self._target is None:
            self._warn_once("systemd_notify_socket_unsupported", notify_socket=address)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, unset_environment: bool = False
    ) -> Notifier:
        """Create a notifier from ``$NOTIFY_SOCKET`` (and the watchdog variables).

        Args:
            environ: the environment to read; default :data:`os.environ`.
            unset_environment: remove ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and
                ``WATCHDOG_PID`` from :data:`os.environ` after reading them, so
                child processes (ServerApps, ClientApp workers) do not inherit
                them. Daemons should pass True.

        Returns:
            A notifier; a no-op one when ``$NOTIFY_SOCKET`` is unset or empty.
        """
        env = os.environ if environ is None else environ
        notifier = cls(env.get("NOTIFY_SOCKET") or None, watchdog_interval(env))
        if unset_environment:
            for key in _ENV_KEYS:
                os.environ.pop(key, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """Whether notifications go anywhere (systemd asked for them)."""
        return self._target is not None

    def send(self, *assignments: str) -> bool:
        """Send one datagram of ``KEY=value`` assignments, one per line.

        The typed methods below cover what fedzero's daemons need; this is the
        escape hatch for others (``ERRNO=``, ``MAINPID=``, ...).

        Args:
            assignments: e.g. ``"READY=1"``, ``"STATUS=serving"``.

        Returns:
            True if the datagram was sent; False if disabled or sending failed.
        """
        if self._target is None or not assignments:
            return False
        data = "\n".join(assignments).encode("utf-8", "replace")
        with self._lock:
            if self._flush() and self._sendto(data):
                return True
            if data != _PING:  # a state change waits for room; a ping is dropped
                self._pending.append(data)
                self._start_retry()
            return False

    def _sendto(self, data: bytes) -> bool:
        """One datagram, without blocking; False when the queue is full or it failed."""
        if self._target is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a full queue must not stall the IO loop
                sock.sendto(data, self._target)
        except BlockingIOError:
            return False
        except OSError as exc:
            self._warn_once("systemd_notify_failed", notify_socket=self.address, error=str(exc))
            return False
        return True

    def _flush(self) -> bool:
        """Send the kept state datagrams in order (lock held); True once none is left."""
        while self._pending:
            if not self._sendto(self._pending[0]):
                return False
            self._pending.popleft()
        return True

    def _start_retry(self) -> None:
        if not self._retrying:
            self._retrying = True
            threading.Thread(target=self._retry, name="systemd-notify-retry", daemon=True).start()

    def _retry(self) -> None:
        delay, wake = _RETRY_FIRST, threading.Event()
        while True:
            wake.wait(delay)
            with self._lock:
                if self._flush():
                    self._retrying = False
                    return
            delay = min(delay * 2, _RETRY_MAX)

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up (or a reload) finished: ``READY=1``.

        Args:
            status: optional status line sent with it (``STATUS=``).
        """
        return self.send("READY=1", *_status(status))

    def status(self, text: str) -> bool:
        """Set the status line shown by ``systemctl status``: ``STATUS=text``."""
        return self.send(*_status(text))

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd shutdown began (draining): ``STOPPING=1``.

        Args:
            status: optional status line sent with it (``STATUS=``).
        """
        return self.send("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        """Ping the watchdog: ``WATCHDOG=1``.

        Call it every :attr:`watchdog_interval` seconds from the daemon's IO
        loop (see the module docs).
        """
        return self.send("WATCHDOG=1")

    def reloading(self, status: str | None = None) -> bool:
        """Tell systemd a reload began: ``RELOADING=1`` + ``MONOTONIC_USEC=``.

        ``MONOTONIC_USEC`` (``CLOCK_MONOTONIC`` in microseconds) is required by
        ``Type=notify-reload`` (systemd >= 253). Send :meth:`ready` when the
        reload is done.

        Args:
            status: optional status line sent with it (``STATUS=``).
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start, stop or reload: ``EXTEND_TIMEOUT_USEC=``.

        The current start/stop/reload timeout becomes "at least ``seconds``
        from now"; send it again before that runs out to extend further.

        Args:
            seconds: the extension, > 0.

        Raises:
            ValueError: ``seconds`` is not positive.
        """
        if not seconds > 0:
            raise ValueError(f"extend_timeout: seconds must be > 0, got {seconds!r}")
        return self.send(f"EXTEND_TIMEOUT_USEC={max(1, round(seconds * 1_000_000))}")

    def _warn_once(self, event: str, **context: object) -> None:
        if not self._warned:
            self._warned = True
            log.warning(event, **context)

    def __repr__(self) -> str:
        return f"Notifier(address={self.address!r}, watchdog_interval={self.watchdog_interval!r})"


def _status(text: str | None) -> tuple[str, ...]:
    """``STATUS=`` assignment for ``text`` (one line), or nothing."""
    if text is None:
        return ()
    return ("STATUS=" + " ".join(text.splitlines()),)
