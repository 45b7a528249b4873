"""The exec service: ServerApp processes and the control endpoint."""

from ._control import Control
from ._service import ExecService

__all__ = [
    "Control",
    "ExecService",
]
