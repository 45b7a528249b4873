"""fedzero.bench."""

from ._aggregate import aggregate_command, run_aggregate_bench
from ._cli import main

__all__ = [
    "aggregate_command",
    "main",
    "run_aggregate_bench",
]
