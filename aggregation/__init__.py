"""Strategies (Flower's names and semantics) and the server optimizers they use.

A ServerApp imports these; they run without Numba (the link does the folding).
The Numba kernels and streaming accumulators the link folds replies with are in
:mod:`fedzero.aggregation.kernels`.
"""

from ._aggregate import aggregate_arrayrecords, aggregate_metricrecords
from ._dp_strategies import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from ._metrics import weighted_metrics_mean
from ._mods import adaptiveclipping_mod, fixedclipping_mod
from ._privacy import PrivacyAccountant
from ._result import Result
from ._server_opt import ServerAdagrad, ServerAdam, ServerMomentum, ServerYogi
from ._serverside import Bulyan, QFedAvg
from ._strategies import (
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
from ._strategy import Strategy
from ._xgb import FedXgbBagging, FedXgbCyclic

__all__ = [
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
