"""The fedzero error hierarchy.

Every error fedzero raises on purpose is a :class:`FedzeroError`. Subclasses are
named by cause, so callers can tell "the input was malformed" from "the peer went
away" from "we closed it" from "it took too long" without parsing messages.
"""

from __future__ import annotations

import enum


class FedzeroError(Exception):
    """Base class of every error raised by fedzero."""


class ConfigurationError(FedzeroError, ValueError):
    """A configuration value is missing or invalid; the message names the key."""


class DeserializationError(FedzeroError, ValueError):
    """Bytes received from the wire (or read from disk) are malformed.

    The message names the problem, e.g. ``"frame 1: header length 900 exceeds
    frame size 120"``. Raised by :func:`fedzero.core.decode` for every kind of
    malformed input, never another exception.
    """


class ProtocolError(FedzeroError):
    """A peer sent a well-formed message that is not allowed at this point."""


class ConnectionBrokenError(FedzeroError):
    """The peer went away (missed heartbeats, connection reset, process died)."""


class ClosedError(FedzeroError):
    """The object was closed by us; no further operations are possible."""


class FedzeroTimeoutError(FedzeroError, TimeoutError):
    """An operation did not complete within its deadline."""


class UnknownRunError(FedzeroError, LookupError):
    """A run id does not name a known run."""


class UnknownNodeError(FedzeroError, LookupError):
    """A node id does not name a registered node."""


class ErrorCode(enum.IntEnum):
    """Codes carried by error replies (:class:`fedzero.core.Error`) on the wire.

    The numeric values are part of the protocol (PROTOCOL.md); never renumber.
    """

    UNKNOWN = 0
    """Unclassified failure."""
    CLIENT_APP_RAISED = 1
    """The ClientApp raised an exception while handling the message."""
    NODE_UNAVAILABLE = 2
    """The destination node is offline, died, or could not be reached."""
    MESSAGE_EXPIRED = 3
    """The message's TTL ran out before a reply arrived."""
    MALFORMED = 4
    """The message could not be decoded."""
    REJECTED = 5
    """The reply failed validation (names, dtypes, shapes, finiteness)."""
    RUN_STOPPED = 6
    """The run was stopped or the daemon is shutting down."""
    UNSUPPORTED = 7
    """No handler for this message type."""
    UNAUTHORIZED = 8
    """The sender may not do this (wrong run, wrong node, unknown key)."""
    OVERLOADED = 9
    """A limit was hit (size, concurrency); retrying later may succeed."""
    AGGREGATION_FAILED = 10
    """The link could not aggregate the round (its fold worker failed); the reason says why."""
