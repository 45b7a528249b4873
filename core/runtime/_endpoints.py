"""Binding ROUTER endpoints safely."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

import structlog
import zmq

from .._errors import ConfigurationError

log = structlog.get_logger(__name__)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an IP) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname or "*": may be public


def is_loopback(address: str) -> bool:
    """Whether ``address`` stays on this machine (loopback IP, ipc://, inproc://)."""
    if not address.startswith("tcp://"):
        return True  # ipc:// and inproc:// never leave the machine
    return is_loopback_host(urlsplit(address).hostname or "")


def check_public_bind(address: str, encrypted: bool, name: str) -> None:
    """Warn loudly when an endpoint would accept unencrypted traffic off this machine."""
    if not encrypted and not is_loopback(address):
        log.warning(
            "insecure_public_bind",
            endpoint=name,
            address=address,
            advice="traffic is unencrypted and unauthenticated; configure CURVE keys "
            "or bind 127.0.0.1",
        )


def bind_router(
    ctx: zmq.Context[zmq.Socket[bytes]],
    address: str,
    max_message_bytes: int,
    secure: Callable[[zmq.Socket[bytes]], None] | None,
) -> zmq.Socket[bytes]:
    """Create and bind a ROUTER for a link endpoint.

    ROUTER_MANDATORY makes sending to a peer that is gone an error instead of a
    silent drop; an unlimited send HWM means a send never drops or blocks (what
    we send is bounded by our own flow control); MAXMSGSIZE bounds input.

    Raises:
        ConfigurationError: the address cannot be bound (the message names it).
    """
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    if address.startswith("tcp://["):
        sock.setsockopt(zmq.IPV6, 1)
    if secure is not None:
        secure(sock)
    try:
        sock.bind(address)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise ConfigurationError(f"cannot bind {address}: {exc}") from exc
    return sock
