"""fedzero.bench: the ``fedzero-bench`` benchmarks (codec, round, aggregate).

Run them with ``fedzero-bench`` (or ``python -m fedzero.bench``); each prints a
table and, with ``--json``, a JSON report. Nodes started by a benchmark never
import this package: the round benchmark's app is a copy of ``_round_app.py``.
"""

from ._aggregate import aggregate_command, run_aggregate_bench
from ._cli import main
from ._stats import BenchError

__all__ = [
    "BenchError",
    "aggregate_command",
    "main",
    "run_aggregate_bench",
]
