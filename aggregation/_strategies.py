"""The strategies, with Flower's names, defaults and semantics.

Robust aggregations (trimmed mean, median, Krum) run on the link as replies
arrive; server optimizers (FedAvgM, FedAdam, FedYogi, FedAdagrad) turn the
link's FedAvg aggregate into the next model on the ServerApp.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fedzero.core import ArrayRecord, ConfigRecord

from ._server_opt import ServerAdagrad as _AdagradOpt
from ._server_opt import ServerAdam as _AdamOpt
from ._server_opt import ServerMomentum as _MomentumOpt
from ._server_opt import ServerYogi as _YogiOpt
from ._strategy import FixedClipping, Result, Strategy, float_arrays


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

    def aggregate_spec(self) -> dict[str, Any]:
        """Trimmed mean on the link."""
        return {"method": "trimmed_mean", "beta": float(self.beta)}


@dataclasses.dataclass
class FedMedian(Strategy):
    """Coordinate-wise median (Yin et al. 2018)."""

    def aggregate_spec(self) -> dict[str, Any]:
        """Median on the link."""
        return {"method": "median"}


@dataclasses.dataclass
class Krum(Strategy):
    """Krum (Blanchard et al. 2017): the reply closest to its neighbours.

    Args:
        num_malicious_nodes: ``f``, Byzantine nodes tolerated.
    """

    num_malicious_nodes: int = 0

    def aggregate_spec(self) -> dict[str, Any]:
        """Krum on the link."""
        return {"method": "krum", "num_malicious": int(self.num_malicious_nodes)}


@dataclasses.dataclass
class MultiKrum(Strategy):
    """Multi-Krum: the weighted mean of the ``num_nodes_to_select`` best replies.

    Args:
        num_malicious_nodes: ``f``, Byzantine nodes tolerated.
        num_nodes_to_select: ``m``, replies averaged.
    """

    num_malicious_nodes: int = 0
    num_nodes_to_select: int = 1

    def aggregate_spec(self) -> dict[str, Any]:
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
    return ArrayRecord({k: stepped.get(k, aggregated[k]) for k in aggregated})


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
    tau: float = 1e-9
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
    tau: float = 1e-3

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


@dataclasses.dataclass
class DifferentialPrivacyServerSideFixedClipping:
    """Wrap a strategy: the link clips each update, noise is added to the aggregate.

    Args:
        strategy: the strategy to make private.
        noise_multiplier: noise standard deviation in units of the clipping norm.
        clipping_norm: L2 bound on each update's distance to the sent model.
        num_sampled_clients: nodes per round (scales the noise).
    """

    strategy: Strategy
    noise_multiplier: float
    clipping_norm: float
    num_sampled_clients: int

    def start(self, grid: Any, initial_arrays: ArrayRecord, **kwargs: Any) -> Result:
        """Run the wrapped strategy with server-side clipping and noise."""
        policy = FixedClipping(self.noise_multiplier, self.clipping_norm, self.num_sampled_clients)
        return dataclasses.replace(self.strategy, privacy=policy).start(
            grid, initial_arrays, **kwargs
        )


@dataclasses.dataclass
class DifferentialPrivacyClientSideFixedClipping(DifferentialPrivacyServerSideFixedClipping):
    """Wrap a strategy: nodes clip their own update, noise is added to the aggregate.

    Nodes find the bound in the train config (``"clipping-norm"``) and apply
    :func:`fedzero.core.clip_update` before replying.
    """

    def start(self, grid: Any, initial_arrays: ArrayRecord, **kwargs: Any) -> Result:
        """Run the wrapped strategy with client-side clipping and server noise."""
        policy = FixedClipping(
            self.noise_multiplier, self.clipping_norm, self.num_sampled_clients, client_side=True
        )
        return dataclasses.replace(self.strategy, privacy=policy).start(
            grid, initial_arrays, **kwargs
        )
