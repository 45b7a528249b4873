"""The user-facing ``fedzero`` command; imports no daemon code."""

from ._control_client import ControlClient
from ._main import run
from ._run_config import parse_run_config
from ._templates import FRAMEWORKS, create_app, package_name

__all__ = [
    "FRAMEWORKS",
    "ControlClient",
    "create_app",
    "package_name",
    "parse_run_config",
    "run",
]
