"""CURVE keys: generate, load, and apply them to sockets (pyzmq ``zmq.auth``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import zmq
import zmq.auth

from .._errors import ConfigurationError


@dataclasses.dataclass(frozen=True, slots=True)
class CurveKeys:
    """The keys one side needs: its own key pair, and (clients) the server's public key.

    Keys are Z85-encoded bytes (40 characters), as in ZeroMQ certificate files.
    """

    public: bytes
    secret: bytes
    server_public: bytes | None = None

    @classmethod
    def load(
        cls, secret_file: str | Path, server_public_file: str | Path | None = None
    ) -> CurveKeys:
        """Load a key pair from a ``*.key_secret`` file (and a server's ``*.key``).

        Raises:
            ConfigurationError: a file is missing or holds no key.
        """
        public, secret = _load(secret_file, need_secret=True)
        server = _load(server_public_file, need_secret=False)[0] if server_public_file else None
        assert secret is not None  # noqa: S101 - _load checked it
        return cls(public=public, secret=secret, server_public=server)


def _load(path: str | Path, *, need_secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot load CURVE key file {path}: {exc}") from exc
    if need_secret and not secret:
        raise ConfigurationError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


def generate_keys(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Create ``name.key`` (public) and ``name.key_secret`` in ``directory``.

    Returns:
        The paths of the public and the secret key file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def apply_client_curve(sock: zmq.Socket[bytes], keys: CurveKeys) -> None:
    """Make ``sock`` a CURVE client (before connect)."""
    if keys.server_public is None:
        raise ConfigurationError("a CURVE client needs the server's public key")
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server_public


def apply_server_curve(sock: zmq.Socket[bytes], keys: CurveKeys) -> None:
    """Make ``sock`` a CURVE server (before bind)."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True
