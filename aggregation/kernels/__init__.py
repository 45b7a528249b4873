"""Numba aggregation kernels and the streaming accumulators the link folds replies into.

Kernels (validating wrappers around ``@njit`` loops) fold client arrays of
float16, bfloat16, float32 or float64 into float32/float64 accumulators.
Accumulators validate every update before it touches their state. Call
:func:`prepare_kernels` when a round opens to compile what it needs in the
background (FedAvg runs in NumPy meanwhile), or :func:`warmup` once at start-up
to compile everything ahead of the first round.

Importing this package imports Numba; the strategies in
:mod:`fedzero.aggregation` do not need it.
"""

from .._dtypes import ACCUMULATOR_DTYPES, INPUT_DTYPES
from ._accumulators import (
    Accumulator,
    AccumulatorStateError,
    UpdateRejected,
    WeightedMeanAccumulator,
)
from ._accumulators_robust import KrumAccumulator, MedianAccumulator, TrimmedMeanAccumulator
from ._config import get_num_threads, set_num_threads
from ._jit import numpy_stand_ins, wait_prepared
from ._jit import prepare as prepare_kernels
from ._kernels_robust import MEDIAN_CHUNK
from ._krum import krum_scores, krum_select, pairwise_sq_distances
from ._ops import (
    all_finite,
    clip_by_norm,
    clip_factor,
    l2_norm,
    weighted_fold,
    weighted_fold_many,
)
from ._robust import NETWORK_MAX_CLIENTS, TrimmedMeanState, coordinate_median, trimmed_mean
from ._warmup import warmup

__all__ = [
    "ACCUMULATOR_DTYPES",
    "INPUT_DTYPES",
    "MEDIAN_CHUNK",
    "NETWORK_MAX_CLIENTS",
    "Accumulator",
    "AccumulatorStateError",
    "KrumAccumulator",
    "MedianAccumulator",
    "TrimmedMeanAccumulator",
    "TrimmedMeanState",
    "UpdateRejected",
    "WeightedMeanAccumulator",
    "all_finite",
    "clip_by_norm",
    "clip_factor",
    "coordinate_median",
    "get_num_threads",
    "krum_scores",
    "krum_select",
    "l2_norm",
    "numpy_stand_ins",
    "pairwise_sq_distances",
    "prepare_kernels",
    "set_num_threads",
    "trimmed_mean",
    "wait_prepared",
    "warmup",
    "weighted_fold",
    "weighted_fold_many",
]
