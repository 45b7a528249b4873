"""Per-run ClientApp worker processes: the pool the agent drives and the worker's own loop."""

from ._pool import WorkerPool, WorkerReply

__all__ = [
    "WorkerPool",
    "WorkerReply",
]
