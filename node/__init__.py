"""fedzero.node: the node agent that runs ClientApps next to the data."""

from fedzero.node._agent import NodeAgent

__all__ = ["NodeAgent"]
