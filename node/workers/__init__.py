"""Per-run ClientApp worker processes: the pool the agent drives and the worker's own loop."""

from ._channel import WorkerReply
from ._pool import WorkerPool

__all__ = [
    "WorkerPool",
    "WorkerReply",
]
