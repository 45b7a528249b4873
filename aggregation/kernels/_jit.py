"""Compile kernels ahead of use: what one round needs in the background, or everything.

A variant is a kernel group for given dtypes, e.g. ``("fold", "float32",
"float32")``. :func:`prepare` is called when a round opens (its method and
dtypes are known before any reply arrives): the variants it lacks are compiled
(or loaded from Numba's cache) by one background thread, while the fold worker
goes on. Until a FedAvg variant (finiteness check, weighted fold, final scale)
is ready, its wrapper computes the same bits with NumPy, so the first round
never waits for the compiler; other methods' kernels compile inline if a reply
needs them first. :func:`compile_all` compiles every variant at once (the
link's ``--warmup``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import numpy as np
import structlog
from numba import typed

from .._dtypes import ACCUMULATOR_DTYPES, INPUT_DTYPES
from . import _kernels as k
from . import _kernels_gram as kg
from . import _kernels_robust as kr
from ._config import JIT_PENDING, parallel_launch
from ._ops import input_view

__all__ = ["compile_all", "numpy_stand_ins", "prepare", "wait_prepared"]

log = structlog.get_logger(__name__)

Key = tuple[str, ...]

_METHODS: Final[dict[str, tuple[str, ...]]] = {
    "fedavg": ("finite", "fold", "scale"),
    "trimmed_mean": ("finite", "trim", "scale"),
    "median": ("finite", "median", "scale"),
    "krum": ("finite", "gram"),
    "multikrum": ("finite", "gram", "fold", "scale"),
}
_lock = threading.Lock()
_done: set[Key] = set()
_jobs: queue.SimpleQueue[list[Key]] = queue.SimpleQueue()
_thread: threading.Thread | None = None


def _dtype(name: str) -> np.dtype[Any]:
    return next(d for d in (*INPUT_DTYPES, *ACCUMULATOR_DTYPES) if str(d) == name)


def _compile(key: Key) -> None:
    """Run the kernels of ``key`` once on tiny arrays (compiles them or loads them cached)."""
    group = key[0]
    with parallel_launch():
        if group == "scale":  # ("scale", accumulator dtype, output dtype)
            k.scale_into(np.zeros(3, _dtype(key[2])), np.zeros(3, _dtype(key[1])), 1.0)
            return
        view, fmt = input_view(np.full(3, 1.5, np.float32).astype(_dtype(key[1])))
        views = typed.List([view, view, view])
        if group == "finite":
            k.all_finite(view, fmt)
        elif group == "gram":
            kg.gram_partials(views, fmt, np.zeros((1, 4, 4)), kg.GRAM_TILE)
            k.sq_distances(view, views, fmt)
        else:
            acc = np.zeros(3, _dtype(key[2]))
            {"fold": _fold, "trim": _trim, "median": _median}[group](acc, views, fmt)


def _fold(acc: Any, views: Any, fmt: int) -> None:
    k.fold_many(acc, views, np.ones(3, acc.dtype), fmt)


def _trim(acc: Any, views: Any, fmt: int) -> None:
    ext = np.zeros((2, 3), acc.dtype)
    kr.trim_fold(ext, acc, views, fmt, 0)
    kr.trim_finish(ext, acc, 2, 1, 5, np.empty_like(acc))


def _median(acc: Any, views: Any, fmt: int) -> None:
    lo = hi = np.zeros(1, np.int64)
    kr.median_network(views, acc, lo, hi, 1, 1, fmt)
    kr.median_select(views, acc, 1, 1, fmt)


def variants(method: str, in_dtypes: Iterable[Any], acc_dtypes: Iterable[Any]) -> list[Key]:
    """The kernel variants a round of ``method`` with these dtypes runs."""
    ins = sorted({str(np.dtype(d)) for d in in_dtypes})
    accs = sorted({str(np.dtype(d)) for d in acc_dtypes})
    outs = [d for d in ins if np.dtype(d) in ACCUMULATOR_DTYPES]
    keys: list[Key] = []
    for group in _METHODS.get(method, ()):
        if group in ("finite", "gram"):
            keys += [(group, d) for d in ins]
        elif group == "scale":
            keys += [(group, a, o) for a in accs for o in {*outs, a}]
        else:
            keys += [(group, d, a) for d in ins for a in accs]
    return keys


def prepare(method: str, in_dtypes: Iterable[Any], acc_dtypes: Iterable[Any]) -> int:
    """Start compiling, in the background, what a round of ``method`` lacks.

    Returns:
        How many variants were queued (0: all ready or already on their way).
    """
    with _lock:
        new = [v for v in variants(method, in_dtypes, acc_dtypes) if v not in _done]
        new = [v for v in new if v not in JIT_PENDING]
        JIT_PENDING.update(new)
        if new:
            _start_thread()
            _jobs.put(new)
    return len(new)


def _start_thread() -> None:
    global _thread
    if _thread is None or not _thread.is_alive():
        _thread = threading.Thread(target=_compiler, name="fedzero-jit", daemon=True)
        _thread.start()


def _compiler() -> None:
    while True:
        batch = _jobs.get()
        start = time.perf_counter()
        for key in batch:
            try:
                _compile(key)
            except Exception as exc:  # the wrapper compiles inline and reports it
                log.error("kernel_compile_failed", variant="/".join(key), error=str(exc))
            with _lock:
                _done.add(key)
                JIT_PENDING.discard(key)
        log.info(
            "kernels_prepared", variants=len(batch), secs=round(time.perf_counter() - start, 3)
        )


def wait_prepared(timeout: float) -> bool:
    """Wait until no variant is being compiled in the background; False on timeout."""
    deadline = time.monotonic() + timeout
    while JIT_PENDING:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def compile_all() -> list[Key]:
    """Compile every variant of every method for every dtype, in this thread."""
    keys = list(
        dict.fromkeys(v for m in _METHODS for v in variants(m, INPUT_DTYPES, ACCUMULATOR_DTYPES))
    )
    for key in keys:
        if key not in _done:
            _compile(key)
            with _lock:
                _done.add(key)
    return keys


@contextmanager
def numpy_stand_ins(in_dtype: Any, acc_dtype: Any) -> Iterator[None]:
    """Inside the block, FedAvg's kernels for these dtypes run as their NumPy stand-ins.

    What a round does while its kernels compile; for tests and measurements.
    """
    with _lock:
        added = [v for v in variants("fedavg", [in_dtype], [acc_dtype]) if v not in JIT_PENDING]
        JIT_PENDING.update(added)
    try:
        yield
    finally:
        with _lock:
            JIT_PENDING.difference_update(added)
