"""CURVE on the link's endpoints: one ZAP handler, node keys and user keys.

Node public keys (``allowed_keys_dir``) are checked in ZAP domain ``"*"`` (the
fleet endpoint); user public keys (``control_allowed_keys_dir``) in domain
``"control"`` (the control endpoint). Both lists are re-read on SIGHUP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import structlog
import zmq
from zmq.auth.thread import ThreadAuthenticator

from fedzero.core import ConfigurationError
from fedzero.core.runtime import CurveKeys, apply_server_curve

from ._config import LinkConfig

log = structlog.get_logger(__name__)

Secure = Callable[[zmq.Socket[bytes]], None]
"""Applied to a socket before it binds."""

FLEET_BACKLOG: Final = 4096
"""TCP connections to the fleet endpoint waiting to be accepted (the kernel may cap it)."""


def _deep_backlog(sock: zmq.Socket[bytes]) -> None:
    sock.setsockopt(zmq.BACKLOG, FLEET_BACKLOG)


class LinkAuth:
    """The link's ZAP handler, started at the first endpoint that needs it.

    Args:
        ctx: the link's zmq context.
        config: the link's settings.
    """

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], config: LinkConfig) -> None:
        self._ctx = ctx
        self._config = config
        self._auth: ThreadAuthenticator | None = None

    def fleet(self) -> Secure:
        """Settings of the fleet endpoint: a deep accept backlog, and CURVE when configured.

        Thousands of nodes connecting at once (a link restart) would overflow
        libzmq's default backlog of 100 and wait out TCP's SYN retries (1 s, 3 s, ...).

        Raises:
            ConfigurationError: the key file or the allowed keys directory is invalid.
        """
        cfg = self._config
        if not cfg.curve_enabled or cfg.curve_secret_key is None:
            return _deep_backlog
        keys = CurveKeys.load(cfg.curve_secret_key)
        if cfg.allowed_keys_dir is None or not cfg.allowed_keys_dir.is_dir():
            raise ConfigurationError(f"allowed_keys_dir: {cfg.allowed_keys_dir} is not a directory")
        self._handler().configure_curve(domain="*", location=str(cfg.allowed_keys_dir))

        def secure(sock: zmq.Socket[bytes]) -> None:
            _deep_backlog(sock)
            apply_server_curve(sock, keys)

        return secure

    def control(self) -> Secure | None:
        """CURVE server settings of the control endpoint (None: plain, loopback only).

        Raises:
            ConfigurationError: the key file or the allowed user keys directory is invalid.
        """
        cfg = self._config
        folder = cfg.control_allowed_keys_dir
        if not cfg.control_curve_enabled or cfg.curve_secret_key is None or folder is None:
            return None
        if not folder.is_dir():
            raise ConfigurationError(f"control_allowed_keys_dir: {folder} is not a directory")
        keys = CurveKeys.load(cfg.curve_secret_key)
        self._handler().configure_curve(domain="control", location=str(folder))

        def secure(sock: zmq.Socket[bytes]) -> None:
            apply_server_curve(sock, keys)
            sock.zap_domain = b"control"

        return secure

    def reload(self) -> None:
        """Re-read the allowed key directories (IO thread)."""
        if self._auth is None:
            return
        cfg = self._config
        if cfg.curve_enabled:
            self._auth.configure_curve(domain="*", location=str(cfg.allowed_keys_dir))
        if cfg.control_curve_enabled:
            folder = str(cfg.control_allowed_keys_dir)
            self._auth.configure_curve(domain="control", location=folder)
        fleet, control = str(cfg.allowed_keys_dir), str(cfg.control_allowed_keys_dir)
        log.info("allowed_keys_reloaded", fleet=fleet, control=control)

    def stop(self) -> None:
        """Stop the ZAP handler, if it was started."""
        if self._auth is not None:
            self._auth.stop()

    def _handler(self) -> ThreadAuthenticator:
        if self._auth is None:
            self._auth = ThreadAuthenticator(self._ctx)
            self._auth.start()
        return self._auth
