"""fedzero.clientapp.mod: ClientApp mods under Flower's name (``flwr.clientapp.mod``).

Use them as in Flower: ``ClientApp(mods=[fixedclipping_mod])``. Re-exported from
:mod:`fedzero.aggregation` (no Numba is imported).
"""

from fedzero.aggregation import adaptiveclipping_mod, fixedclipping_mod

__all__ = ["adaptiveclipping_mod", "fixedclipping_mod"]
