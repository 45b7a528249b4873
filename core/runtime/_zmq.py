"""The one place for ZeroMQ plumbing every loop shares.

- :func:`drain` receives what a socket holds without blocking and hands each
  message to a handler (the link, the node agent, the worker pool and the Grid
  all read their sockets this way).
- :class:`WakePipe` wakes a thread blocked in ``zmq.Poller.poll`` from another
  thread (a socketpair: pollable, signal-safe, no extra zmq socket).
- :func:`zmq_errors` is the boundary translator: every ``zmq.ZMQError`` raised
  inside it leaves as a :class:`~fedzero.core.FedzeroError` naming the peer.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from .._errors import ClosedError, ConfigurationError, ConnectionBrokenError


def drain(
    sock: zmq.Socket[Any],
    handle: Callable[[list[zmq.Frame]], object],
    limit: int | None = None,
) -> int:
    """Receive every message ``sock`` holds now, without blocking, into ``handle``.

    Args:
        sock: a socket owned by the calling thread.
        handle: called with each message's frames (zero-copy ``zmq.Frame`` objects).
        limit: stop after this many messages (so one busy socket cannot starve
            the others a loop serves); None reads until the socket is empty.

    Returns:
        How many messages were handled.
    """
    count = 0
    while limit is None or count < limit:
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            break
        count += 1
        handle(frames)
    return count


class WakePipe:
    """Wakes a thread that polls :meth:`fileno` from any other thread.

    ``wake`` is safe from signal handlers and other threads; ``clear`` is called
    by the polling thread when the pipe is readable. Register it with
    ``poller.register(pipe.fileno(), zmq.POLLIN)``.
    """

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def fileno(self) -> int:
        """The readable end, for ``zmq.Poller.register``."""
        return self._r.fileno()

    def wake(self) -> None:
        """Make the pipe readable (a full pipe already is: nothing is lost)."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._w.send(b"\0")

    def clear(self) -> None:
        """Empty the pipe (called by the polling thread)."""
        with contextlib.suppress(BlockingIOError, OSError):
            while self._r.recv(4096):
                pass

    def close(self) -> None:
        """Close both ends."""
        self._r.close()
        self._w.close()


@contextlib.contextmanager
def zmq_errors(action: str, address: str) -> Iterator[None]:
    """Translate ``zmq.ZMQError`` into fedzero's errors, naming what and where.

    Args:
        action: what was being done, e.g. ``"bind the fleet endpoint"``.
        address: the endpoint or peer, put in the message.

    Raises:
        ClosedError: the socket or its context was closed by us.
        ConfigurationError: the address is in use, malformed or not allowed.
        ConnectionBrokenError: any other transport failure.
    """
    try:
        yield
    except zmq.ContextTerminated as exc:
        raise ClosedError(f"cannot {action} at {address}: the context was closed") from exc
    except zmq.ZMQError as exc:
        if exc.errno == zmq.ENOTSOCK:
            raise ClosedError(f"cannot {action} at {address}: the socket is closed") from exc
        if exc.errno in (errno.EADDRINUSE, errno.EINVAL, errno.EACCES, zmq.EPROTONOSUPPORT):
            raise ConfigurationError(f"cannot {action} at {address}: {exc.strerror}") from exc
        raise ConnectionBrokenError(f"cannot {action} at {address}: {exc.strerror}") from exc
