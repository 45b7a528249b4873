"""``fedzero-bench aggregate``: throughput and memory of the aggregation kernels.

Input: ``K`` clients, each a model of ``P`` parameters split into ``L`` layers,
generated once (random, not timed) as rows of one ``(K, P)`` stack so the NumPy
references can use the stack directly. Every kernel is warmed up first (compile
time excluded), then timed ``runs`` times; figures are median [min-max].

Throughput is GB/s of client input: ``K * P * itemsize / seconds``. The memory
bandwidth reference is ``np.copyto`` of the same number of bytes, in the same run.

Peak extra memory, two ways (tracemalloc cannot see Numba's allocations, and
``ru_maxrss`` only ever grows):

* analytic: bytes the kernel allocates by construction (accumulators, state,
  outputs, per-thread tiles);
* measured: the peak of resident memory (``/proc/self/statm``, sampled every
  millisecond by a thread while the kernel runs once more, untimed) minus the
  resident memory just before it started. Freed-and-reused heap can hide part of
  an allocation, so read it as a lower bound next to the analytic figure.

Accumulator state is allocated outside the timed region (the link allocates it at
round start, before replies arrive); page faults on first touch are timed.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedzero.aggregation.kernels import (
    MEDIAN_CHUNK,
    coordinate_median,
    get_num_threads,
    krum_select,
    pairwise_sq_distances,
    set_num_threads,
    trimmed_mean,
    warmup,
    weighted_fold,
    weighted_fold_many,
)

from ._stats import Summary, machine

__all__ = ["aggregate_command", "run_aggregate_bench"]

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class _Case:
    name: str
    ours: Callable[[], object]
    analytic_bytes: int
    reference: Callable[[], object] | None
    reference_name: str
    flower: Callable[[], object] | None = None


def _rss() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def _peak_extra(fn: Callable[[], object]) -> int:
    """Peak resident bytes above the starting level while ``fn`` runs once."""
    base = _rss()
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.001):
            peak = max(peak, _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
        peak = max(peak, _rss())
    finally:
        done.set()
        sampler.join()
    return max(0, peak - base)


def _time(fn: Callable[[], object], runs: int) -> Summary:
    fn()  # warm-up: JIT already done by warmup(), this warms caches and pages
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Summary.of(samples)


def _layers(params: int, layers: int) -> list[slice]:
    bounds = np.linspace(0, params, layers + 1).astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]


def _flower() -> Any:
    try:
        from flwr.server.strategy import aggregate  # type: ignore[import-not-found]
    except ImportError:
        return None
    return aggregate


class _Ours:
    """Our kernels over the clients' layers, as the link calls them."""

    def __init__(self, stack: np.ndarray, layers: list[slice], weights: list[float]) -> None:
        acc_dtype = np.float64 if stack.dtype == np.float64 else np.float32
        self.clients = [[stack[j, s] for s in layers] for j in range(stack.shape[0])]
        self.accs = [np.zeros(s.stop - s.start, acc_dtype) for s in layers]
        self.weights = weights

    def _layer(self, li: int) -> list[np.ndarray]:
        return [c[li] for c in self.clients]

    def fedavg_single(self) -> None:
        for client, w in zip(self.clients, self.weights, strict=True):
            for acc, x in zip(self.accs, client, strict=True):
                weighted_fold(acc, x, w)

    def fedavg_multi(self) -> None:
        for li, acc in enumerate(self.accs):
            weighted_fold_many(acc, self._layer(li), self.weights)

    def trimmed(self, beta: float) -> Callable[[], object]:
        return lambda: [trimmed_mean(self._layer(li), beta) for li in range(len(self.accs))]

    def median(self) -> object:
        return [coordinate_median(self._layer(li)) for li in range(len(self.accs))]

    def krum(self) -> object:
        dist = sum(pairwise_sq_distances(self._layer(li)) for li in range(len(self.accs)))
        return krum_select(np.asarray(dist), 1, 1)


class _Numpy:
    """The obvious NumPy way to compute the same aggregates."""

    def __init__(self, stack: np.ndarray, layers: list[slice], weights: list[float]) -> None:
        self.stack = stack
        self.layers = layers
        self.weights = np.asarray(weights)

    def average(self) -> object:
        return np.average(self.stack, 0, self.weights)

    def sort_slice(self, beta: float) -> Callable[[], object]:
        k = self.stack.shape[0]
        cut = int(beta * k)
        return lambda: [
            np.sort(self.stack[:, s], axis=0)[cut : k - cut].mean(axis=0) for s in self.layers
        ]

    def median(self) -> object:
        return np.median(self.stack, axis=0)

    def krum(self) -> object:
        flat = self.stack.astype(np.float64)
        sq = (flat * flat).sum(axis=1)
        dist = sq[:, None] + sq[None, :] - 2 * flat @ flat.T
        return krum_select(dist, 1, 1)


def _flower_cases(
    stack: np.ndarray, layers: list[slice], weights: list[float], b1: float
) -> dict[str, Callable[[], object]]:
    """Flower's aggregate functions on the same inputs, if Flower is installed."""
    fl = _flower()
    if fl is None:
        return {}
    results = [([stack[j, s] for s in layers], int(w)) for j, w in enumerate(weights)]
    return {
        "fedavg": lambda: fl.aggregate(results),
        "trimmed b1": lambda: fl.aggregate_trimmed_avg(results, b1),
        "trimmed 0.2": lambda: fl.aggregate_trimmed_avg(results, 0.2),
        "median": lambda: fl.aggregate_median(results),
        "krum": lambda: fl.aggregate_krum(results, 1, 0),
    }


def _cases(stack: np.ndarray, layers: list[slice], weights: list[float]) -> list[_Case]:
    k, p = stack.shape
    acc_item = 8 if stack.dtype == np.float64 else 4
    model = p * acc_item
    b1 = 1.0 / k
    ours, ref = _Ours(stack, layers, weights), _Numpy(stack, layers, weights)
    fl = _flower_cases(stack, layers, weights, b1)
    trim_bytes = (2 * int(0.2 * k) + 2) * model
    median_bytes = model + get_num_threads() * k * MEDIAN_CHUNK * acc_item
    kp = (k + 3) // 4 * 4  # Krum: float64 Gram partials per 65,536 coordinates + tiles
    krum_bytes = 8 * kp * kp * (-(-p // 65536) + 1) + get_num_threads() * kp * 512 * 8
    avg = (ref.average, "np.average")
    trim_b1 = (ours.trimmed(b1), 4 * model, ref.sort_slice(b1), "sort+slice")
    trim_02 = (ours.trimmed(0.2), trim_bytes, ref.sort_slice(0.2), "sort+slice")
    return [
        _Case("fedavg single-fold", ours.fedavg_single, model, *avg, fl.get("fedavg")),
        _Case("fedavg multi-fold", ours.fedavg_multi, model, *avg),
        _Case("trimmed mean b=1", *trim_b1, fl.get("trimmed b1")),
        _Case("trimmed mean beta=0.2", *trim_02, fl.get("trimmed 0.2")),
        _Case("median", ours.median, median_bytes, ref.median, "np.median", fl.get("median")),
        _Case("krum (f=1)", ours.krum, krum_bytes, ref.krum, "numpy gram", fl.get("krum")),
    ]


def _gbps(nbytes: int, s: Summary) -> dict[str, float]:
    return {
        "median": nbytes / s.median / 1e9,
        "min": nbytes / s.max / 1e9,
        "max": nbytes / s.min / 1e9,
    }


def _measure(
    case: _Case, nbytes: int, copy: Summary, runs: int, *, references: bool
) -> dict[str, Any]:
    """Time one kernel (and its references) and measure its extra memory."""
    ours = _time(case.ours, runs)
    entry: dict[str, Any] = {
        "kernel": case.name,
        "seconds": ours.as_dict(),
        "gb_per_s": _gbps(nbytes, ours),
        "vs_copy": copy.median / ours.median,
        "extra_bytes_analytic": case.analytic_bytes,
        "extra_bytes_measured": _peak_extra(case.ours),
    }
    if references and case.reference is not None:
        ref = _time(case.reference, max(1, min(runs, 3)))
        entry["reference"] = {"name": case.reference_name, "gb_per_s": _gbps(nbytes, ref)}
        entry["speedup_vs_reference"] = ref.median / ours.median
        entry["reference"]["extra_bytes_measured"] = _peak_extra(case.reference)
    if references and case.flower is not None:
        fl = _time(case.flower, max(1, min(runs, 3)))
        entry["flower"] = {"gb_per_s": _gbps(nbytes, fl)}
    return entry


def run_aggregate_bench(
    clients: int = 16,
    params: int = 25_000_000,
    layers: int = 1,
    dtype: str = "float32",
    runs: int = 5,
    threads: int | None = None,
    *,
    references: bool = True,
) -> dict[str, Any]:
    """Measure every kernel (and the NumPy/Flower references) on the same inputs.

    Returns:
        A JSON-ready dict: settings, machine, copy bandwidth, one entry per kernel.
    """
    if clients < 1 or params < 1 or not 1 <= layers <= params or runs < 1:
        msg = "clients, params, runs must be >= 1 and 1 <= layers <= params"
        raise ValueError(msg)
    set_num_threads(threads)
    compile_s = warmup()
    rng = np.random.default_rng(0)
    stack = rng.random((clients, params), dtype=np.float32).astype(np.dtype(dtype), copy=False)
    weights = [float(w) for w in rng.integers(1, 1000, clients)]
    nbytes = int(stack.nbytes)
    dst = np.empty(params, stack.dtype)

    def copy_all() -> None:
        for row in stack:
            np.copyto(dst, row)

    copy = _time(copy_all, runs)
    cases = _cases(stack, _layers(params, layers), weights)
    results = [_measure(case, nbytes, copy, runs, references=references) for case in cases]
    return {
        "benchmark": "aggregate",
        "clients": clients,
        "params": params,
        "layers": layers,
        "dtype": str(stack.dtype),
        "runs": runs,
        "threads": get_num_threads(),
        "input_bytes": nbytes,
        "warmup_s": compile_s,
        "machine": machine(),
        "copy_gb_per_s": _gbps(nbytes, copy),
        "results": results,
    }


def _fmt(g: dict[str, float]) -> str:
    return f"{g['median']:.2f} [{g['min']:.2f}-{g['max']:.2f}]"


def _rows(report: dict[str, Any]) -> list[list[str]]:
    rows = [["copy (np.copyto)", _fmt(report["copy_gb_per_s"]), "1.00", "", "", "", ""]]
    for r in report["results"]:
        ref = r.get("reference")
        row = [
            r["kernel"],
            _fmt(r["gb_per_s"]),
            f"{r['vs_copy']:.2f}",
            f"{ref['name']} {ref['gb_per_s']['median']:.2f}" if ref else "-",
            f"{r['speedup_vs_reference']:.1f}x" if ref else "-",
            f"{r['flower']['gb_per_s']['median']:.2f}" if "flower" in r else "-",
            f"{r['extra_bytes_analytic'] / 1e6:.0f} / {r['extra_bytes_measured'] / 1e6:.0f}",
        ]
        rows.append(row)
    return rows


def print_aggregate_table(report: dict[str, Any]) -> None:
    """Print the report as a rich table (plain text when not on a terminal)."""
    from rich.console import Console
    from rich.table import Table

    title = (
        f"aggregate: K={report['clients']} x P={report['params']:,} {report['dtype']} "
        f"in {report['layers']} layer(s), {report['threads']} threads; "
        f"GB/s of client input, median \\[min-max] over {report['runs']} runs"
    )
    table = Table(title=title)
    heads = [
        "kernel",
        "GB/s",
        "x copy",
        "numpy GB/s",
        "speed-up",
        "flower GB/s",
        "extra MB (analytic / RSS)",
    ]
    for h in heads:
        table.add_column(h, justify="left" if h == "kernel" else "right")
    for row in _rows(report):
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 150).print(table)


def aggregate_command(
    clients: int,
    params: int,
    layers: int,
    dtype: str,
    runs: int,
    threads: int | None,
    as_json: bool,
) -> int:
    """Run the aggregation benchmark and print a table (or JSON).

    Returns:
        The process exit code: 0 on success, 2 on invalid arguments.
    """
    try:
        report = run_aggregate_bench(clients, params, layers, dtype, runs, threads)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}")
        return 2
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_aggregate_table(report)
    return 0
