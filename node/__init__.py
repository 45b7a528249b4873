"""fedzero.node: the node agent that runs ClientApps next to the data."""

from ._agent import NodeAgent
from ._config import NodeConfig
from ._tasks import handle_message

__all__ = [
    "NodeAgent",
    "NodeConfig",
    "handle_message",
]
