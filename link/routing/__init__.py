"""The link's IO-thread routing: fleet and app messages, runs, nodes, credit."""

from .._state import Pending, PendingTable
from ._credit import CreditRequest, CreditWindow
from ._router import Router

__all__ = [
    "CreditRequest",
    "CreditWindow",
    "Pending",
    "PendingTable",
    "Router",
]
