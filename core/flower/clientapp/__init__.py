"""fedzero.clientapp: the ClientApp under Flower's name (``flwr.clientapp``)."""

from fedzero.core import ClientApp

__all__ = ["ClientApp"]
