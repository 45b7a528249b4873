"""Compile every kernel for every supported dtype combination ahead of the first round."""

from __future__ import annotations

import time

import numpy as np
import structlog

from .._dtypes import ACCUMULATOR_DTYPES, INPUT_DTYPES
from ._accumulators import WeightedMeanAccumulator
from ._krum import pairwise_sq_distances
from ._ops import all_finite, l2_norm, weighted_fold, weighted_fold_many
from ._robust import NETWORK_MAX_CLIENTS, coordinate_median, trimmed_mean

__all__ = ["warmup"]

log = structlog.get_logger(__name__)


def warmup() -> float:
    """Compile (or load from Numba's on-disk cache) every kernel variant.

    Covers each input dtype (float16, bfloat16, float32, float64) with each
    accumulator dtype (float32, float64) for folds, trimmed mean, median,
    distances, finiteness, norms and output casts. Daemons call this at
    start-up so the first round is not slowed by the JIT. (The server
    optimizers run in NumPy in the ServerApp process: nothing to compile.)

    Returns:
        Seconds spent.
    """
    start = time.perf_counter()
    for in_dtype in INPUT_DTYPES:
        xs = [np.full(3, j + 1.0, np.float32).astype(in_dtype) for j in range(3)]
        all_finite(xs[0])
        l2_norm(xs[0])
        pairwise_sq_distances(xs)
        for acc_dtype in ACCUMULATOR_DTYPES:
            acc = np.zeros(3, acc_dtype)
            weighted_fold(acc, xs[0], 1.0)
            weighted_fold_many(acc, xs, [1.0, 1.0, 1.0])
            trimmed_mean(xs, 0.34, dtype=acc_dtype)  # fill phase and fold phase
            coordinate_median(xs, dtype=acc_dtype)
            many = [xs[0]] * (NETWORK_MAX_CLIENTS + 1)
            coordinate_median(many, dtype=acc_dtype)
            mean = WeightedMeanAccumulator(accumulator_dtype=acc_dtype)
            mean.begin({"w": xs[0]})
            mean.fold({"w": xs[0]}, 1.0)
            mean.finish()
    secs = time.perf_counter() - start
    log.info("aggregation_warmup_done", secs=round(secs, 3))
    return secs
