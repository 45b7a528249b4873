"""Compile every kernel for every supported dtype combination ahead of the first round."""

from __future__ import annotations

import time

import structlog

from ._jit import compile_all

__all__ = ["warmup"]

log = structlog.get_logger(__name__)


def warmup() -> float:
    """Compile (or load from Numba's on-disk cache) every kernel variant.

    Covers each input dtype (float16, bfloat16, float32, float64) with each
    accumulator dtype (float32, float64) for folds, trimmed mean, median, Krum
    distances, finiteness and output casts: minutes on a cold cache. Without it,
    a round compiles only what it needs, in the background from the moment it
    opens (see :func:`prepare_kernels`). (The server optimizers run in NumPy in
    the ServerApp process: nothing to compile.)

    Returns:
        Seconds spent.
    """
    start = time.perf_counter()
    variants = compile_all()
    secs = time.perf_counter() - start
    log.info("aggregation_warmup_done", secs=round(secs, 3), variants=len(variants))
    return secs
