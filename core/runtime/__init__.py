"""Daemon runtime: settings, systemd notify, logging setup, CURVE keys, endpoints."""

from ._daemon_cli import DaemonCli, DaemonConfig
from ._defaults import (
    DEFAULT_APP_ADDRESS,
    DEFAULT_CONTROL_ADDRESS,
    DEFAULT_FLEET_ADDRESS,
    DEFAULT_HTTP_ADDRESS,
)
from ._endpoints import bind_router, check_public_bind, is_loopback, is_loopback_host
from ._logging import configure_logging
from ._security import CurveKeys, apply_client_curve, apply_server_curve, generate_keys
from ._settings import config_origins, default_state_dir, load_config, render_config
from ._settings_sources import Origin, env_var_name
from ._settings_types import scalar_from_text
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
