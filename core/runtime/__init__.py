"""Daemon runtime: settings, systemd notify, logging setup, CURVE keys, endpoints.

The settings and default addresses (standard library only) are imported with the
package; the rest needs ZeroMQ or structlog (which loads rich) and is imported
when first named (PEP 562), so that reading a setting or an app's config does
not load them.
"""

from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._defaults import (
    DEFAULT_APP_ADDRESS,
    DEFAULT_CONTROL_ADDRESS,
    DEFAULT_FLEET_ADDRESS,
    DEFAULT_HTTP_ADDRESS,
)
from ._settings import config_origins, default_state_dir, load_config, render_config
from ._settings_sources import Origin, env_var_name
from ._settings_types import scalar_from_text

if TYPE_CHECKING:  # imported on first use by __getattr__ below
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


def __getattr__(name: str) -> Any:
    """Import a name whose module needs ZeroMQ or structlog on first use (PEP 562)."""
    module: ModuleType
    if name in ("DaemonCli", "DaemonConfig"):
        from . import _daemon_cli

        module = _daemon_cli
    elif name in ("bind_router", "check_public_bind", "is_loopback", "is_loopback_host"):
        from . import _endpoints

        module = _endpoints
    elif name == "configure_logging":
        from . import _logging

        module = _logging
    elif name in ("CurveKeys", "apply_client_curve", "apply_server_curve", "generate_keys"):
        from . import _security

        module = _security
    elif name in ("Notifier", "watchdog_interval"):
        from . import _systemd

        module = _systemd
    elif name in ("WakePipe", "drain", "zmq_errors"):
        from . import _zmq

        module = _zmq
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
