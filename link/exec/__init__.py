"""The exec service: ServerApp processes and the control endpoint."""

from ._control import Control
from ._service import MAX_LINE, ExecService

__all__ = [
    "MAX_LINE",
    "Control",
    "ExecService",
]
