"""Daemon runtime: settings, systemd notify, logging setup, CURVE keys, endpoints.

The settings and default addresses (standard library only) are imported with the
package; the rest needs ZeroMQ or structlog (which loads rich) and is imported
when first named (PEP 562), so that reading a setting or an app's config does
not load them.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_names
from ._defaults import (
    DEFAULT_APP_ADDRESS,
    DEFAULT_CONTROL_ADDRESS,
    DEFAULT_FLEET_ADDRESS,
    DEFAULT_HTTP_ADDRESS,
)
from ._settings import config_origins, default_state_dir, load_config, render_config
from ._settings_sources import Origin, env_var_name
from ._settings_types import scalar_from_text

if TYPE_CHECKING:  # imported on first use (lazy_names below)
    from ._daemon_cli import DaemonCli, DaemonConfig
    from ._endpoints import bind_router, check_public_bind, is_loopback, is_loopback_host
    from ._logging import configure_logging
    from ._security import CurveKeys, apply_client_curve, apply_server_curve, generate_keys
    from ._systemd import Notifier, watchdog_interval
    from ._zmq import WakePipe, drain, zmq_errors

__all__ = [
    "DEFAULT_APP_ADDRESS",
    "DEFAULT_CONTROL_ADDRESS",
    "DEFAULT_FLEET_ADDRESS",
    "DEFAULT_HTTP_ADDRESS",
    "CurveKeys",
    "DaemonCli",
    "DaemonConfig",
    "Notifier",
    "Origin",
    "WakePipe",
    "apply_client_curve",
    "apply_server_curve",
    "bind_router",
    "check_public_bind",
    "config_origins",
    "configure_logging",
    "default_state_dir",
    "drain",
    "env_var_name",
    "generate_keys",
    "is_loopback",
    "is_loopback_host",
    "load_config",
    "render_config",
    "scalar_from_text",
    "watchdog_interval",
    "zmq_errors",
]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_names(
        __name__,
        {
            "CurveKeys": "._security",
            "DaemonCli": "._daemon_cli",
            "DaemonConfig": "._daemon_cli",
            "Notifier": "._systemd",
            "WakePipe": "._zmq",
            "apply_client_curve": "._security",
            "apply_server_curve": "._security",
            "bind_router": "._endpoints",
            "check_public_bind": "._endpoints",
            "configure_logging": "._logging",
            "drain": "._zmq",
            "generate_keys": "._security",
            "is_loopback": "._endpoints",
            "is_loopback_host": "._endpoints",
            "watchdog_interval": "._systemd",
            "zmq_errors": "._zmq",
        },
    )
