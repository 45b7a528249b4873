"""The aggregation surfaces: pinned, and the strategies' one leaves Numba out."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from fedzero import aggregation
from fedzero.aggregation import kernels

STRATEGY_API = [
    "Bulyan",
    "DifferentialPrivacyClientSideAdaptiveClipping",
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
    "DifferentialPrivacyServerSideFixedClipping",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedXgbBagging",
    "FedXgbCyclic",
    "FedYogi",
    "Krum",
    "MultiKrum",
    "PrivacyAccountant",
    "QFedAvg",
    "Result",
    "ServerAdagrad",
    "ServerAdam",
    "ServerMomentum",
    "ServerYogi",
    "Strategy",
    "adaptiveclipping_mod",
    "aggregate_arrayrecords",
    "aggregate_metricrecords",
    "fixedclipping_mod",
    "weighted_metrics_mean",
]

KERNEL_API = [
    "ACCUMULATOR_DTYPES",
    "Accumulator",
    "AccumulatorStateError",
    "INPUT_DTYPES",
    "KrumAccumulator",
    "MEDIAN_CHUNK",
    "MedianAccumulator",
    "NETWORK_MAX_CLIENTS",
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

# A ServerApp's life with every strategy: import, build, and one server-optimizer
# step each (FedAvgM, FedAdam, FedYogi, FedAdagrad update the model on the ServerApp).
SERVERAPP = textwrap.dedent(
    """
    import sys
    import numpy as np
    from fedzero import aggregation
    from fedzero.core import ArrayRecord

    current = ArrayRecord({"w": np.ones(4, np.float32), "n": np.ones(1, np.int64)})
    aggregated = ArrayRecord({"w": np.zeros(4, np.float32), "n": np.ones(1, np.int64)})
    for name in ("FedAvg", "FedProx", "FedTrimmedAvg", "FedMedian", "Krum", "MultiKrum",
                 "FedAvgM", "FedAdam", "FedYogi", "FedAdagrad"):
        strategy = getattr(aggregation, name)()
        strategy.aggregate_spec()
        strategy.update_global(1, current, aggregated)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("numba", "llvmlite"))
    print("loaded:", loaded, "kernels" if "fedzero.aggregation.kernels" in sys.modules else "")
    """
)


def test_surfaces_are_pinned() -> None:
    assert sorted(aggregation.__all__) == sorted(STRATEGY_API)
    assert sorted(kernels.__all__) == sorted(KERNEL_API)
    for module in (aggregation, kernels):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_strategies_run_without_numba() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SERVERAPP], capture_output=True, text=True, timeout=110, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "loaded: []", proc.stdout
