"""Robust streaming accumulators: trimmed mean, median, Krum / Multi-Krum."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from ._accumulators import Accumulator, UpdateRejected
from ._krum import gram_sq_distances, krum_select
from ._ops import inputs_list, weighted_fold_many
from ._robust import TrimmedMeanState, coordinate_median

__all__ = ["KrumAccumulator", "MedianAccumulator", "TrimmedMeanAccumulator"]


class TrimmedMeanAccumulator(Accumulator):
    """Coordinate-wise trimmed mean (Flower's FedTrimmedAvg), streaming in one pass.

    At ``finish`` with ``K`` folded updates, ``b = int(beta * K)`` values are cut
    per side (``scipy.stats.trim_mean`` semantics). Weights are validated but not
    used, as in Flower. Memory: ``(2 * b_max + 1)`` model-sized buffers in the
    accumulator dtype, with ``b_max = int(beta * max_clients)``.

    Args:
        beta: Fraction cut per side, ``0 <= beta < 0.5``.
        max_clients: Most updates a round may fold; sizes the state.
        accumulator_dtype: float32 or float64, or ``None`` for the default.
        reject_non_finite: Reject updates holding NaN or +-inf (NaN would make the
            result unspecified, so keep this on unless inputs are known clean).
    """

    def __init__(
        self,
        beta: float,
        max_clients: int,
        *,
        accumulator_dtype: Any = None,
        reject_non_finite: bool = True,
    ) -> None:
        super().__init__(accumulator_dtype=accumulator_dtype, reject_non_finite=reject_non_finite)
        if not 0.0 <= beta < 0.5:
            msg = f"beta must be in [0, 0.5), got {beta}"
            raise ValueError(msg)
        if max_clients < 1:
            msg = f"max_clients must be >= 1, got {max_clients}"
            raise ValueError(msg)
        self.beta = beta
        self.max_clients = max_clients
        self._states: dict[str, TrimmedMeanState] = {}

    def _begin(self) -> None:
        cut = int(self.beta * self.max_clients)
        self._states = {
            n: TrimmedMeanState(int(np.prod(shape)), cut, self.acc_dtype(n))
            for n, (shape, _) in self._specs.items()
        }

    def _check_capacity(self, incoming: int) -> None:
        if self.count + incoming > self.max_clients:
            msg = f"round is sized for {self.max_clients} updates and {self.count} are folded"
            raise UpdateRejected(msg)

    def _fold(self, updates: list[dict[str, np.ndarray]], weights: list[float]) -> None:
        for name, state in self._states.items():
            views, fmt, _ = inputs_list([u[name] for u in updates])
            state.fold_views(views, fmt)

    def _finish(self) -> dict[str, np.ndarray]:
        cut = int(self.beta * self.count)
        return {n: self._cast_out(n, s.result(cut)) for n, s in self._states.items()}

    @property
    def nbytes(self) -> int:
        """Bytes of accumulator state."""
        return sum(s.nbytes for s in self._states.values())


class _BufferingAccumulator(Accumulator):
    """Keeps every update (a copy, or a reference when ``copy=False``)."""

    def __init__(
        self, *, accumulator_dtype: Any = None, reject_non_finite: bool = True, copy: bool = True
    ) -> None:
        super().__init__(accumulator_dtype=accumulator_dtype, reject_non_finite=reject_non_finite)
        self.copy = copy
        self._updates: list[dict[str, np.ndarray]] = []
        self._weights: list[float] = []

    def _begin(self) -> None:
        self._updates = []
        self._weights = []

    def _keep(self, updates: list[dict[str, np.ndarray]], weights: list[float]) -> None:
        for update in updates:
            self._updates.append({n: a.copy() if self.copy else a for n, a in update.items()})
        self._weights.extend(weights)

    @property
    def nbytes(self) -> int:
        """Bytes of buffered updates (counting references too)."""
        return sum(a.nbytes for u in self._updates for a in u.values())


class MedianAccumulator(_BufferingAccumulator):
    """Coordinate-wise median (Flower's FedMedian); weights are validated but not used.

    Memory: every update is buffered (``K`` model-sized arrays in the model dtype;
    pass ``copy=False`` to keep references to immutable buffers such as received
    frames instead), plus one output and ``threads x K x 1024`` temporaries.
    """

    def _fold(self, updates: list[dict[str, np.ndarray]], weights: list[float]) -> None:
        self._keep(updates, weights)

    def _finish(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name in self._specs:
            med = coordinate_median([u[name] for u in self._updates], dtype=self.acc_dtype(name))
            out[name] = self._cast_out(name, med)
        return out


class KrumAccumulator(_BufferingAccumulator):
    """Krum / Multi-Krum (Blanchard et al. 2017) over the buffered updates.

    Folding keeps the update (validated; a reference with ``copy=False``). The
    squared L2 distances (over all arrays) are computed once, when the round
    finishes, in one pass over every update (Gram identity, each distance within
    1e-9 relative of the exact one). Each update's score is the sum of its
    ``max(1, K - f - 2)`` smallest distances; equal scores go to the lower key
    (the ``key`` given to :meth:`fold`, e.g. the node id; else arrival order).

    Args:
        num_malicious: ``f``, the number of Byzantine clients tolerated.
        num_to_keep: ``0`` for Krum (the best update, verbatim); ``m >= 1`` for
            Multi-Krum (weighted mean of the ``m`` best), as in Flower.
        accumulator_dtype: Dtype of the Multi-Krum mean, or ``None`` for the default.
        reject_non_finite: Reject updates holding NaN or +-inf.
        copy: Copy updates (default) or keep references to immutable buffers.
    """

    def __init__(
        self,
        num_malicious: int,
        num_to_keep: int = 0,
        *,
        accumulator_dtype: Any = None,
        reject_non_finite: bool = True,
        copy: bool = True,
    ) -> None:
        super().__init__(
            accumulator_dtype=accumulator_dtype, reject_non_finite=reject_non_finite, copy=copy
        )
        if num_malicious < 0 or num_to_keep < 0:
            msg = f"num_malicious and num_to_keep must be >= 0, got {num_malicious}, {num_to_keep}"
            raise ValueError(msg)
        self.num_malicious = num_malicious
        self.num_to_keep = num_to_keep
        self._keys: list[Hashable] = []
        self._dist: np.ndarray | None = None

    def _begin(self) -> None:
        super()._begin()
        self._keys = []
        self._dist = None

    def _fold(self, updates: list[dict[str, np.ndarray]], weights: list[float]) -> None:
        self._keep(updates, weights)
        self._dist = None

    def _note_keys(self, keys: list[Hashable]) -> None:
        self._keys.extend(keys)

    def distances(self) -> np.ndarray:
        """The ``(K, K)`` squared-distance matrix of the updates folded so far."""
        if self._dist is None or self._dist.shape[0] != len(self._updates):
            if not self._updates:
                return np.zeros((0, 0), np.float64)
            inputs = []
            for name in self._specs:
                views, fmt, _ = inputs_list([u[name] for u in self._updates], what=name)
                inputs.append((views, fmt))
            self._dist = gram_sq_distances(inputs)
        return self._dist

    def _finish(self) -> dict[str, np.ndarray]:
        keep = min(max(1, self.num_to_keep), self.count)
        best = krum_select(self.distances(), self.num_malicious, keep, self._keys)
        if self.num_to_keep == 0:
            return {n: a.copy() for n, a in self._updates[best[0]].items()}
        out: dict[str, np.ndarray] = {}
        weights = [self._weights[i] for i in best]
        for name, (shape, _) in self._specs.items():
            acc = np.zeros(shape, self.acc_dtype(name))
            weighted_fold_many(acc, [self._updates[i][name] for i in best], weights)
            out[name] = self._cast_out(name, acc, 1.0 / sum(weights))
        return out
