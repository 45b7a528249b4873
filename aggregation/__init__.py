"""Strategies (Flower's names and semantics) and the server optimizers they use.

A ServerApp imports these; they run without Numba (the link does the folding).
The Numba kernels and streaming accumulators the link folds replies with are in
:mod:`fedzero.aggregation.kernels`.
"""

from ._metrics import weighted_metrics_mean
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

__all__ = [
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
    "MultiKrum",
    "Result",
    "ServerAdagrad",
    "ServerAdam",
    "ServerMomentum",
    "ServerYogi",
    "Strategy",
    "weighted_metrics_mean",
]
