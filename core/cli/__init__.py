"""The user-facing ``fedzero`` command; imports no daemon code.

``ControlClient`` (ZeroMQ) is imported when first named (PEP 562): the command
starts without it and loads it for the commands that reach a link.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_names
from ._main import run
from ._run_config import parse_run_config
from ._templates import FRAMEWORKS, create_app, package_name

if TYPE_CHECKING:  # imported on first use (lazy_names below)
    from ._control_client import ControlClient

__all__ = [
    "FRAMEWORKS",
    "ControlClient",
    "create_app",
    "package_name",
    "parse_run_config",
    "run",
]

if not TYPE_CHECKING:  # type checkers read the import above
    __getattr__, __dir__ = lazy_names(__name__, {"ControlClient": "._control_client"})
