"""fedzero.serverapp: the ServerApp and Grid under Flower's name (``flwr.serverapp``).

``fedzero.serverapp.strategy`` holds the strategies (``flwr.serverapp.strategy``).
"""

from fedzero.core import Grid, ServerApp

from . import strategy

__all__ = ["Grid", "ServerApp", "strategy"]
