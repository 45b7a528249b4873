"""The strategies, with Flower's names, defaults and semantics.

Robust aggregations (trimmed mean, median, Krum) run on the link as replies
arrive; server optimizers (FedAvgM, FedAdam, FedYogi, FedAdagrad) turn the
link's FedAvg aggregate into the next model on the ServerApp. When a round's
replies come back instead (a subclass overriding ``aggregate_train``, DP
clipping), ``aggregate_arrays`` does the same arithmetic in NumPy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from fedzero.core import ArrayRecord, ConfigRecord, ConfigurationError, RecordDict

from ._aggregate import (
    aggregate_arrayrecords,
    median_arrays,
    select_multikrum,
    trimmed_mean_arrays,
)
from ._server_opt import ServerAdagrad as _AdagradOpt
from ._server_opt import ServerAdam as _AdamOpt
from ._server_opt import ServerMomentum as _MomentumOpt
from ._server_opt import ServerYogi as _YogiOpt
from ._strategy import Strategy, float_arrays


@dataclasses.dataclass
class FedAvg(Strategy):
    """Federated averaging (McMahan et al. 2017), weighted by ``weighted_by_key``."""


@dataclasses.dataclass
class FedProx(Strategy):
    """FedAvg plus a proximal term on the clients (Li et al. 2020).

    The server side is FedAvg; ``proximal_mu`` goes to the nodes in the train
    config as ``"proximal-mu"``, where :func:`fedzero.core.proximal_term` adds
    ``mu/2 * ||w - w_global||^2`` to the loss.

    Args:
        proximal_mu: weight of the proximal term (0 is FedAvg).
    """

    proximal_mu: float = 0.0

    def train_config(self, server_round: int, config: ConfigRecord) -> ConfigRecord:
        """Add ``proximal-mu`` to the train config."""
        out = super().train_config(server_round, config)
        out["proximal-mu"] = float(self.proximal_mu)
        return out


@dataclasses.dataclass
class FedTrimmedAvg(Strategy):
    """Coordinate-wise trimmed mean (Yin et al. 2018), streamed on the link.

    Args:
        beta: fraction cut at each end (``int(beta * replies)`` values per side).
    """

    beta: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.beta < 0.5:
            raise ConfigurationError(f"beta must be in [0, 0.5), got {self.beta}")

    def aggregate_spec(self) -> dict[str, Any] | None:
        """Trimmed mean on the link."""
        return {"method": "trimmed_mean", "beta": float(self.beta)}

    def aggregate_arrays(
        self, server_round: int, contents: Sequence[RecordDict]
    ) -> tuple[ArrayRecord | None, list[RecordDict]]:
        """Trimmed mean of the replies' arrays."""
        return trimmed_mean_arrays(contents, self.beta), list(contents)


@dataclasses.dataclass
class FedMedian(Strategy):
    """Coordinate-wise median (Yin et al. 2018)."""

    def aggregate_spec(self) -> dict[str, Any] | None:
        """Median on the link."""
        return {"method": "median"}

    def aggregate_arrays(
        self, server_round: int, contents: Sequence[RecordDict]
    ) -> tuple[ArrayRecord | None, list[RecordDict]]:
        """Median of the replies' arrays."""
        return median_arrays(contents), list(contents)


@dataclasses.dataclass
class Krum(Strategy):
    """Krum (Blanchard et al. 2017): the reply closest to its neighbours.

    Args:
        num_malicious_nodes: ``f``, Byzantine nodes tolerated.
    """

    num_malicious_nodes: int = 0

    def aggregate_spec(self) -> dict[str, Any] | None:
        """Krum on the link."""
        return {"method": "krum", "num_malicious": int(self.num_malicious_nodes)}

    def aggregate_arrays(
        self, server_round: int, contents: Sequence[RecordDict]
    ) -> tuple[ArrayRecord | None, list[RecordDict]]:
        """The reply with the lowest Krum score (ties: the lower node id)."""
        chosen = select_multikrum(contents, self.num_malicious_nodes, 1)
        return aggregate_arrayrecords(chosen, self.weighted_by_key), chosen


@dataclasses.dataclass
class MultiKrum(Strategy):
    """Multi-Krum: the weighted mean of the ``num_nodes_to_select`` best replies.

    Args:
        num_malicious_nodes: ``f``, Byzantine nodes tolerated.
        num_nodes_to_select: ``m``, replies averaged.
    """

    num_malicious_nodes: int = 0
    num_nodes_to_select: int = 1

    def aggregate_arrays(
        self, server_round: int, contents: Sequence[RecordDict]
    ) -> tuple[ArrayRecord | None, list[RecordDict]]:
        """Weighted mean of the best-scored replies (ties: the lower node id)."""
        chosen = select_multikrum(contents, self.num_malicious_nodes, self.num_nodes_to_select)
        return aggregate_arrayrecords(chosen, self.weighted_by_key), chosen

    def aggregate_spec(self) -> dict[str, Any] | None:
        """Multi-Krum on the link."""
        return {
            "method": "multikrum",
            "num_malicious": int(self.num_malicious_nodes),
            "num_selected": int(self.num_nodes_to_select),
        }


def _apply(
    optimizer: Any, server_round: int, current: ArrayRecord, aggregated: ArrayRecord
) -> ArrayRecord:
    floats = float_arrays(current)
    stepped = optimizer.step(floats, {k: aggregated[k] for k in floats}, server_round)
    return ArrayRecord({k: stepped.get(k, aggregated[k]) for k in aggregated}, copy=False)


@dataclasses.dataclass
class FedAvgM(Strategy):
    """FedAvg with server momentum (Hsu et al. 2019).

    Args:
        server_learning_rate: step size on the server.
        server_momentum: momentum of the server update (0 disables it).
    """

    server_learning_rate: float = 1.0
    server_momentum: float = 0.0
    _opt: Any = dataclasses.field(init=False, repr=False, default=None)

    def update_global(
        self, server_round: int, current: ArrayRecord, aggregated: ArrayRecord
    ) -> ArrayRecord:
        """Apply the momentum step to the aggregate."""
        if self._opt is None:
            self._opt = _MomentumOpt(self.server_learning_rate, self.server_momentum)
        return _apply(self._opt, server_round, current, aggregated)


@dataclasses.dataclass
class _FedOptStrategy(Strategy):
    eta: float = 1e-1
    eta_l: float = 1e-1
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3
    _opt: Any = dataclasses.field(init=False, repr=False, default=None)
    _optimizer: Any = dataclasses.field(init=False, repr=False, default=None)

    def update_global(
        self, server_round: int, current: ArrayRecord, aggregated: ArrayRecord
    ) -> ArrayRecord:
        """Apply the adaptive server step to the aggregate."""
        if self._opt is None:
            hyper = {k: getattr(self, k) for k in ("eta", "eta_l", "beta_1", "beta_2", "tau")}
            self._opt = self._optimizer(**hyper)
        return _apply(self._opt, server_round, current, aggregated)


@dataclasses.dataclass
class FedAdam(_FedOptStrategy):
    """FedAdam (Reddi et al. 2021): Adam on the server, FedAvg on the link."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._optimizer = _AdamOpt


@dataclasses.dataclass
class FedYogi(_FedOptStrategy):
    """FedYogi (Reddi et al. 2021): Yogi on the server. Defaults as Flower's."""

    eta: float = 1e-2
    eta_l: float = 0.0316

    def __post_init__(self) -> None:
        super().__post_init__()
        self._optimizer = _YogiOpt


@dataclasses.dataclass
class FedAdagrad(_FedOptStrategy):
    """FedAdagrad (Reddi et al. 2021): Adagrad on the server. Defaults as Flower's."""

    beta_1: float = 0.0
    beta_2: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._optimizer = _AdagradOpt
