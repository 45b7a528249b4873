"""Strategies, Numba aggregation kernels, streaming accumulators and server optimizers.

Kernels (validating wrappers around ``@njit`` loops) fold client arrays of
float16, bfloat16, float32 or float64 into float32/float64 accumulators.
Accumulators validate every update before it touches their state. Call
:func:`warmup` once at start-up to compile everything ahead of the first round.
"""

from ._accumulators import Accumulator, UpdateRejected, WeightedMeanAccumulator
from ._accumulators_robust import KrumAccumulator, MedianAccumulator, TrimmedMeanAccumulator
from ._config import get_num_threads, set_num_threads
from ._metrics import weighted_metrics_mean
from ._ops import (
    ACCUMULATOR_DTYPES,
    INPUT_DTYPES,
    all_finite,
    clip_by_norm,
    clip_factor,
    krum_scores,
    krum_select,
    l2_norm,
    pairwise_sq_distances,
    weighted_fold,
    weighted_fold_many,
)
from ._robust import TrimmedMeanState, coordinate_median, trimmed_mean
from ._server_opt import ServerAdagrad, ServerAdam, ServerMomentum, ServerYogi
from ._strategies import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
)
from ._strategy import FixedClipping, Result, Strategy
from ._warmup import warmup

__all__ = [
    "ACCUMULATOR_DTYPES",
    "INPUT_DTYPES",
    "Accumulator",
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideFixedClipping",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "FixedClipping",
    "Krum",
    "KrumAccumulator",
    "MedianAccumulator",
    "MultiKrum",
    "Result",
    "ServerAdagrad",
    "ServerAdam",
    "ServerMomentum",
    "ServerYogi",
    "Strategy",
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
    "pairwise_sq_distances",
    "set_num_threads",
    "trimmed_mean",
    "warmup",
    "weighted_fold",
    "weighted_fold_many",
    "weighted_metrics_mean",
]
