"""Flower's ``flwr.common.logger``: ``log(INFO, "...", *args)`` and the ``logger`` behind it.

Flower apps log with the standard library (``log(level, msg, *args)``); here it
goes to a ``fedzero`` logger that prints ``INFO :      message`` lines to stderr,
as Flower's does (a ServerApp's stderr is its run's log).
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("fedzero.app")
"""The logger Flower-style app code writes to (level INFO, own stderr handler)."""

if not logger.handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(levelname)s :      %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

log = logger.log
"""``log(level, msg, *args)``: log one line (``logging.Logger.log``)."""

__all__ = ["log", "logger"]
