"""The ``fedzero`` CLI's connection to a link's control endpoint, and connection profiles.

Profiles live in ``~/.config/fedzero/config.toml`` (``$XDG_CONFIG_HOME`` is
honoured), like flwr's federations::

    default = "lab"

    [federations.lab]
    address = "tcp://10.0.0.5:9093"

``--link ADDRESS`` wins over ``--federation NAME``, which wins over the default
profile, which wins over ``tcp://127.0.0.1:9093``.

A link whose control endpoint requires CURVE needs this user's key pair and the
link's public key: ``curve-secret-key`` and ``link-public-key`` in the profile,
or ``$FEDZERO_CURVE_SECRET_KEY`` and ``$FEDZERO_LINK_PUBLIC_KEY``.
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq

from .. import ConfigurationError, CurveKeys, ErrorCode, FedzeroTimeoutError, ProtocolError
from ..runtime import DEFAULT_CONTROL_ADDRESS, apply_client_curve, zmq_errors
from ..wire import control, parse_envelope


def profiles_path() -> Path:
    """The user's connection profiles file."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fedzero" / "config.toml"


def resolve_connection(link: str | None, federation: str | None) -> tuple[str, CurveKeys | None]:
    """The control address and CURVE keys to use (see the module docstring).

    Raises:
        ConfigurationError: the profiles file is invalid, names no such
            federation, or a key file cannot be loaded.
    """
    profile = {} if link else _profile(federation)
    address = link or str(profile.get("address", DEFAULT_CONTROL_ADDRESS))
    _check_address(address)
    secret = os.environ.get("FEDZERO_CURVE_SECRET_KEY") or profile.get("curve-secret-key")
    server = os.environ.get("FEDZERO_LINK_PUBLIC_KEY") or profile.get("link-public-key")
    if not secret and not server:
        return address, None
    if not (secret and server):
        raise ConfigurationError("curve-secret-key and link-public-key go together")
    return address, CurveKeys.load(str(secret), str(server))


def _check_address(address: str) -> None:
    scheme, sep, rest = address.partition("://")
    if not sep:
        hint = f"; did you mean tcp://{address}?" if ":" in address else ""
        raise ConfigurationError(
            f"link address {address!r} has no scheme (tcp://, ipc:// or inproc://){hint}"
        )
    if scheme not in ("tcp", "ipc", "inproc") or not rest:
        raise ConfigurationError(f"link address {address!r}: use tcp://, ipc:// or inproc://")


def resolve_address(link: str | None, federation: str | None) -> str:
    """The control address to use."""
    return resolve_connection(link, federation)[0]


def _profile(federation: str | None) -> dict[str, Any]:
    path = profiles_path()
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{path}: {exc}") from exc
    name = federation or data.get("default")
    if name is None:
        return {}
    profile = data.get("federations", {}).get(name)
    if not isinstance(profile, dict) or not isinstance(profile.get("address"), str):
        raise ConfigurationError(f"{path}: no [federations.{name}] with an address")
    return dict(profile)


class ControlClient:
    """Request/answer over a DEALER to the link's control ROUTER.

    Args:
        address: the control endpoint.
        timeout: seconds to wait for each answer.
        curve: this user's keys and the link's public key, if the endpoint needs CURVE.
    """

    def __init__(self, address: str, timeout: float = 10.0, curve: CurveKeys | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            apply_client_curve(self._sock, curve)
        with zmq_errors("connect to the link's control endpoint", address):
            self._sock.connect(address)

    def close(self) -> None:
        """Close the connection."""
        self._sock.close(linger=0)
        self._ctx.term()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: str, *extra_frames: bytes, **fields: Any) -> tuple[str, dict[str, Any]]:
        """Send a request; return the answer's kind and header.

        Raises:
            FedzeroTimeoutError: no answer in time (is the link running?).
            ProtocolError: the link refused the request.
            ConfigurationError: the address is not a control endpoint.
        """
        self._sock.send_multipart([*control(kind, **fields), *extra_frames], copy=False)
        return self.receive(self.timeout)

    def receive(self, timeout: float | None) -> tuple[str, dict[str, Any]]:
        """Wait for the next answer (None: forever)."""
        if not self._sock.poll(None if timeout is None else int(timeout * 1000)):
            raise FedzeroTimeoutError(f"no answer from the link at {self.address} in {timeout}s")
        kind, header, _ = parse_envelope(self._sock.recv_multipart())
        if kind == "refused" and header.get("code") == ErrorCode.UNSUPPORTED:
            # Only an endpoint that takes no control requests at all answers so:
            # the address is the link's fleet (or app) endpoint, not its control one.
            raise ConfigurationError(
                f"{self.address} is not the link's control endpoint: {header['reason']}"
            )
        if kind == "refused":
            raise ProtocolError(header["reason"])
        return kind, header

    def follow_logs(self, run_id: int, since_id: int = 0) -> Iterator[dict[str, Any]]:
        """Yield the run's log events as they happen, until the run has ended."""
        self._sock.send_multipart(control("logs", run_id=run_id, since_id=since_id, follow=True))
        while True:
            _, header = self.receive(None)
            yield from header["events"]
            if header["done"]:
                return

    def wait_done(self, run_id: int, timeout: float) -> dict[str, Any]:
        """Wait until ``run_id`` is over and return its row (for scripts and tests)."""
        deadline = time.monotonic() + timeout
        for _ in self.follow_logs(run_id):
            if time.monotonic() > deadline:
                break
        _, header = self.request("list_runs", limit=1000)
        for row in header["runs"]:
            if row["run_id"] == run_id:
                return dict(row)
        raise FedzeroTimeoutError(f"run {run_id} not found")
