"""The user-facing ``fedzero`` command; imports no daemon code.

``ControlClient`` (ZeroMQ) is imported when first named (PEP 562): the command
starts without it and loads it for the commands that reach a link.
"""

from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._main import run
from ._run_config import parse_run_config
from ._templates import FRAMEWORKS, create_app, package_name

if TYPE_CHECKING:  # imported on first use by __getattr__ below
    from ._control_client import ControlClient

__all__ = [
    "FRAMEWORKS",
    "ControlClient",
    "create_app",
    "package_name",
    "parse_run_config",
    "run",
]


def __getattr__(name: str) -> Any:
    """Import ``ControlClient`` (and ZeroMQ) on first use (PEP 562)."""
    module: ModuleType
    if name == "ControlClient":
        from . import _control_client

        module = _control_client
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
