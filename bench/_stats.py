"""Timing and reporting helpers shared by the benchmarks."""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fedzero.core import FedzeroError


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """Median, minimum and maximum of repeated measurements (seconds)."""

    median: float
    min: float
    max: float
    runs: int

    @classmethod
    def of(cls, samples: list[float]) -> Summary:
        """Summarize ``samples``."""
        return cls(statistics.median(samples), min(samples), max(samples), len(samples))

    def ms(self) -> str:
        """Format as ``median [min-max] ms``."""
        return f"{self.median * 1e3:.3f} [{self.min * 1e3:.3f}-{self.max * 1e3:.3f}] ms"

    def as_dict(self) -> dict[str, float | int]:
        """Return the figures in seconds, for JSON."""
        return dataclasses.asdict(self)


def time_runs(fn: Callable[[], object], runs: int, warmup: int = 1) -> Summary:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Summary.of(samples)


def machine() -> dict[str, Any]:
    """Describe the machine for a benchmark's JSON output."""
    import os

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


class BenchError(FedzeroError):
    """A benchmark could not measure: a process died, or a result was wrong."""
