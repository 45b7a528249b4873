"""Server-side optimizers applied to the aggregated update (Reddi et al. 2021; Hsu et al. 2019).

Each optimizer keeps its state (moments) per array name across rounds and turns
``(current model, aggregated model)`` into the next model. Formulas and defaults
follow Flower's FedAdam, FedYogi, FedAdagrad and FedAvgM. State arrays are
float64 for float64 models, float32 otherwise (the "work dtype"), and results are
cast back to the model dtype.

They run in the ServerApp process, in NumPy (no Numba there), one cache-sized
chunk at a time so temporaries stay small. Per element the arithmetic is the one
the Numba kernels they replaced did, bit for bit: differences and squares in the
work dtype, moments and the step in float64, rounded once when stored.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ._dtypes import default_accumulator_dtype

__all__ = ["ServerAdagrad", "ServerAdam", "ServerMomentum", "ServerYogi"]

Arrays = Mapping[str, Any]
Work = npt.NDArray[np.floating[Any]]
Wide = npt.NDArray[np.float64]

_CHUNK: Final = 1 << 16
"""Coordinates per NumPy pass: a chunk's float64 temporaries stay in cache."""


def _chunks(n: int) -> Iterator[slice]:
    return (slice(start, start + _CHUNK) for start in range(0, n, _CHUNK))


def _f64(x: Work) -> Wide:
    wide: Wide = x.astype(np.float64, copy=False)
    return wide


def _work(name: str, current: Arrays, aggregated: Arrays) -> tuple[np.ndarray, np.ndarray]:
    if name not in aggregated:
        msg = f"aggregated arrays lack {name!r}; pass the same names as the current model"
        raise ValueError(msg)
    x = np.asarray(current[name])
    agg = np.asarray(aggregated[name])
    if x.shape != agg.shape:
        msg = f"array {name!r}: aggregated shape {agg.shape} != current shape {x.shape}"
        raise ValueError(msg)
    dtype = default_accumulator_dtype(x.dtype)
    xw = np.ascontiguousarray(x, dtype).reshape(-1)
    aw = np.ascontiguousarray(agg, dtype).reshape(-1)
    return xw, aw


def _check_names(current: Arrays, aggregated: Arrays) -> None:
    if set(current) != set(aggregated):
        msg = (
            f"current and aggregated arrays have different names: "
            f"{sorted(set(current) ^ set(aggregated))}; pass matching models"
        )
        raise ValueError(msg)


@dataclass
class _FedOpt:
    eta: float
    eta_l: float
    beta_1: float
    beta_2: float
    tau: float
    m_t: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    v_t: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def _eta(self, server_round: int) -> float:
        return self.eta

    def _second_moment(self, v: Work, d2: Work) -> Wide:
        raise NotImplementedError

    def step(
        self, current: Arrays, aggregated: Arrays, server_round: int = 1
    ) -> dict[str, np.ndarray]:
        """Return the next model and update the moments in place.

        Args:
            current: The model sent this round (name to array).
            aggregated: The aggregate of the clients' replies (same names/shapes).
            server_round: Round number, 1-based (FedAdam's bias correction uses it).

        Raises:
            ValueError: On mismatched names or shapes.
        """
        _check_names(current, aggregated)
        eta = self._eta(server_round)
        out: dict[str, np.ndarray] = {}
        for name in current:
            x, agg = _work(name, current, aggregated)
            m = self.m_t.setdefault(name, np.zeros_like(x))
            v = self.v_t.setdefault(name, np.zeros_like(x))
            new = np.empty_like(x)
            with np.errstate(all="ignore"):  # NaN/inf propagate, as in Flower
                for part in _chunks(x.shape[0]):
                    self._update(x[part], agg[part], m[part], v[part], new[part], eta)
            src = np.asarray(current[name])
            out[name] = new.reshape(src.shape).astype(src.dtype, copy=False)
        return out

    def _update(self, x: Work, agg: Work, m: Work, v: Work, out: Work, eta: float) -> None:
        """``m = b1*m + (1-b1)*delta``, ``v`` per optimizer, ``out = x + eta*m/(sqrt(v)+tau)``."""
        delta = agg - x
        m_new = self.beta_1 * _f64(m) + (1.0 - self.beta_1) * _f64(delta)
        v_new = self._second_moment(v, delta * delta)
        m[...] = m_new
        v[...] = v_new
        out[...] = _f64(x) + eta * m_new / (np.sqrt(v_new) + self.tau)


@dataclass
class ServerAdam(_FedOpt):
    """FedAdam: ``v = b2*v + (1-b2)*d^2``; step scaled by Adam's bias correction.

    ``eta_t = eta * sqrt(1 - b2^(t+1)) / (1 - b1^(t+1))`` as in Flower, with ``t``
    the server round. ``eta_l`` is the client learning rate, kept for configs.
    """

    eta: float = 1e-1
    eta_l: float = 1e-1
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3

    def _eta(self, server_round: int) -> float:
        t = server_round + 1.0
        return float(self.eta * np.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t))

    def _second_moment(self, v: Work, d2: Work) -> Wide:
        return self.beta_2 * _f64(v) + (1.0 - self.beta_2) * _f64(d2)


@dataclass
class ServerYogi(_FedOpt):
    """FedYogi: ``v = v - (1-b2) * d^2 * sign(v - d^2)``."""

    eta: float = 1e-2
    eta_l: float = 0.0316
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3

    def _second_moment(self, v: Work, d2: Work) -> Wide:
        return _f64(v) - (1.0 - self.beta_2) * _f64(d2) * np.sign(v - d2)


@dataclass
class ServerAdagrad(_FedOpt):
    """FedAdagrad: ``v = v + d^2`` (Flower's defaults: no momentum, ``beta_1 = 0``)."""

    eta: float = 1e-1
    eta_l: float = 1e-1
    beta_1: float = 0.0
    beta_2: float = 0.0
    tau: float = 1e-3

    def _second_moment(self, v: Work, d2: Work) -> Wide:
        return _f64(v + d2)  # the sum in the work dtype, like the kernel it replaced


@dataclass
class ServerMomentum:
    """FedAvg with server momentum (Hsu et al. 2019), Flower's formulation.

    ``g = current - aggregated``; with momentum, ``mom = momentum * mom + g`` (just
    ``g`` on the first step); ``next = current - server_learning_rate * mom``.
    """

    server_learning_rate: float = 1.0
    server_momentum: float = 0.0
    momentum_vector: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def step(
        self, current: Arrays, aggregated: Arrays, server_round: int = 1
    ) -> dict[str, np.ndarray]:
        """Return the next model and update the momentum buffer.

        Raises:
            ValueError: On mismatched names or shapes.
        """
        _check_names(current, aggregated)
        out: dict[str, np.ndarray] = {}
        for name in current:
            x, agg = _work(name, current, aggregated)
            first = name not in self.momentum_vector
            mom = self.momentum_vector.setdefault(name, np.zeros_like(x))
            new = np.empty_like(x)
            with np.errstate(all="ignore"):  # NaN/inf propagate, as in Flower
                for part in _chunks(x.shape[0]):
                    self._update(x[part], agg[part], mom[part], new[part], first)
            src = np.asarray(current[name])
            out[name] = new.reshape(src.shape).astype(src.dtype, copy=False)
        return out

    def _update(self, x: Work, agg: Work, mom: Work, out: Work, first: bool) -> None:
        """``g = x - agg`` (``beta*mom + g`` after the first step); ``out = x - lr*g``."""
        g = _f64(x - agg)
        if self.server_momentum > 0.0 and not first:
            g = self.server_momentum * _f64(mom) + g
        mom[...] = g
        out[...] = _f64(x) - self.server_learning_rate * g
