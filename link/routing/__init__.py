"""The link's IO-thread routing: fleet and app messages, runs, nodes, credit."""

from .._state import Node, Pending, PendingTable
from ._credit import CreditRequest, CreditWindow
from ._liveness import Admission, Liveness
from ._router import Router

__all__ = [
    "Admission",
    "CreditRequest",
    "CreditWindow",
    "Liveness",
    "Node",
    "Pending",
    "PendingTable",
    "Router",
]
