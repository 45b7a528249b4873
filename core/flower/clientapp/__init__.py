"""fedzero.clientapp: the ClientApp under Flower's name (``flwr.clientapp``).

``fedzero.clientapp.mod`` holds the ClientApp mods (``flwr.clientapp.mod``).
"""

from fedzero.core import ClientApp

from . import mod
from .mod import fixedclipping_mod

__all__ = ["ClientApp", "fixedclipping_mod", "mod"]
