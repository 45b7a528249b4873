"""Public robust-aggregation wrappers: streaming trimmed mean and coordinate-wise median."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import typed

from .._dtypes import ACCUMULATOR_DTYPES, default_accumulator_dtype
from . import _kernels_robust as kr
from ._config import parallel_launch
from ._ops import FloatArray, inputs_list

__all__ = ["NETWORK_MAX_CLIENTS", "TrimmedMeanState", "coordinate_median", "trimmed_mean"]

NETWORK_MAX_CLIENTS = 64
"""Up to this many clients the median uses a vectorized comparator network."""


def _acc_dtype(dtype: Any, inputs: np.dtype[Any]) -> np.dtype[Any]:
    if dtype is None:
        return default_accumulator_dtype(inputs)
    acc: np.dtype[Any] = np.dtype(dtype)
    if acc not in ACCUMULATOR_DTYPES:
        msg = f"accumulator dtype must be float32 or float64, got {acc}"
        raise TypeError(msg)
    return acc


class TrimmedMeanState:
    """Streaming trimmed-mean state: one pass, ``(2b + 1) x P`` memory for ``b`` cut per side.

    Values are widened to the accumulator dtype and then trimmed; the result for
    ``cut <= max_cut`` values removed per side equals sorting the ``K`` values per
    coordinate and averaging ``sorted[cut:K-cut]`` (up to rounding of that sum).
    NaN inputs give unspecified results: reject them before folding.

    Args:
        size: Number of coordinates ``P``.
        max_cut: Largest ``b`` that :meth:`result` will be asked for.
        dtype: Accumulator dtype (float32 or float64).
    """

    def __init__(self, size: int, max_cut: int, dtype: Any = np.float32) -> None:
        if max_cut < 0 or size < 0:
            msg = f"size and max_cut must be >= 0, got size={size}, max_cut={max_cut}"
            raise ValueError(msg)
        acc = _acc_dtype(dtype, np.dtype(np.float32))
        self.max_cut = max_cut
        self.count = 0
        self.ext: FloatArray = np.empty((2 * max_cut, size), acc)
        self.mid: FloatArray = np.zeros(size, acc)

    @property
    def nbytes(self) -> int:
        """Bytes held by the state arrays."""
        return int(self.ext.nbytes + self.mid.nbytes)

    def fold_views(self, views: typed.List[Any], fmt: int) -> None:
        """Fold validated kernel views (from ``inputs_list``) of flat client arrays."""
        with parallel_launch():
            kr.trim_fold(self.ext, self.mid, views, fmt, self.count)
        self.count += len(views)

    def result(self, cut: int) -> FloatArray:
        """Mean of the values left after removing ``cut`` smallest and ``cut`` largest.

        Raises:
            ValueError: If ``cut > max_cut`` or nothing would be left.
        """
        if not 0 <= cut <= self.max_cut:
            msg = f"cut must be in 0..{self.max_cut} (the state was sized for it), got {cut}"
            raise ValueError(msg)
        if self.count - 2 * cut <= 0:
            msg = f"cannot cut {cut} per side from {self.count} values; fold more clients"
            raise ValueError(msg)
        rows = min(self.count, 2 * self.max_cut)
        out = np.empty_like(self.mid)
        with parallel_launch():
            kr.trim_finish(self.ext, self.mid, rows, cut, self.count, out)
        return out


def _client_list(xs: Sequence[npt.NDArray[Any]] | npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
    if isinstance(xs, np.ndarray):
        if xs.ndim == 0:
            msg = "a stack of clients needs a leading client axis; got a 0-d array"
            raise ValueError(msg)
        return list(xs)
    return list(xs)


def trimmed_mean(
    xs: Sequence[npt.NDArray[Any]] | npt.NDArray[Any], beta: float, *, dtype: Any = None
) -> FloatArray:
    """Coordinate-wise trimmed mean, ``scipy.stats.trim_mean`` semantics over the client axis.

    ``b = int(beta * K)`` values are cut per side (Flower's FedTrimmedAvg uses the
    same rule). Runs the streaming kernel, so memory is ``(2b + 1) x P``.

    Args:
        xs: ``K`` client arrays of one shape and dtype, or a ``(K, ...)`` stack.
        beta: Fraction cut per side, ``0 <= beta < 0.5``.
        dtype: Accumulator/output dtype; default float64 for float64 input, else float32.

    Returns:
        Array shaped like one client.

    Raises:
        ValueError: If ``beta`` is out of range or would cut every value.
    """
    clients = _client_list(xs)
    if not 0.0 <= beta < 0.5:
        msg = f"beta must be in [0, 0.5), got {beta}"
        raise ValueError(msg)
    views, fmt, shape = inputs_list(clients)
    cut = int(beta * len(clients))
    state = TrimmedMeanState(int(np.prod(shape)), cut, _acc_dtype(dtype, clients[0].dtype))
    state.fold_views(views, fmt)
    return state.result(cut).reshape(shape)


@functools.lru_cache(maxsize=64)
def median_network(n: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int, int]:
    """Comparators of a network that puts the median order statistics of ``n`` values in place.

    Batcher's odd-even merge sort for the next power of two, minus comparators that
    touch the padding (conceptually +inf, so they never move anything), minus those
    that cannot influence the median positions.

    Returns:
        ``(lo, hi, left, right)``: comparator endpoints and the two median positions.
    """
    size = 1
    while size < n:
        size *= 2
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        step = p
        while step >= 1:
            for j in range(step % p, size - step, 2 * step):
                pairs.extend(
                    (i + j, i + j + step)
                    for i in range(min(step, size - j - step))
                    if (i + j) // (2 * p) == (i + j + step) // (2 * p)
                )
            step //= 2
        p *= 2
    pairs = [(a, b) for a, b in pairs if b < n]
    left, right = (n - 1) // 2, n // 2
    needed = {left, right}
    kept: list[tuple[int, int]] = []
    for a, b in reversed(pairs):
        if a in needed or b in needed:
            kept.append((a, b))
            needed.update((a, b))
    kept.reverse()
    lo = np.array([a for a, _ in kept], np.int64)
    hi = np.array([b for _, b in kept], np.int64)
    return lo, hi, left, right


def coordinate_median(
    xs: Sequence[npt.NDArray[Any]] | npt.NDArray[Any], *, dtype: Any = None
) -> FloatArray:
    """Exact coordinate-wise median over clients, equal to ``np.median(stack, axis=0)``.

    Values are widened to ``dtype``; for an even ``K`` the two middle values are
    averaged in float64 and rounded once. A coordinate with a NaN gives NaN.
    Work is chunked over coordinates: besides the output, each thread holds one
    ``K x 1024`` tile (``K <= 64``: comparator network) or a ``K`` buffer (larger
    ``K``: quickselect), so temporaries are ``O(threads x K x 1024)``.

    Args:
        xs: ``K`` client arrays of one shape and dtype, or a ``(K, ...)`` stack.
        dtype: Output dtype; default float64 for float64 input, else float32.

    Returns:
        Array shaped like one client.
    """
    clients = _client_list(xs)
    views, fmt, shape = inputs_list(clients)
    out = np.empty(int(np.prod(shape)), _acc_dtype(dtype, clients[0].dtype))
    n = len(clients)
    if n <= NETWORK_MAX_CLIENTS:
        lo, hi, left, right = median_network(n)
        with parallel_launch():
            kr.median_network(views, out, lo, hi, left, right, fmt)
    else:
        with parallel_launch():
            kr.median_select(views, out, (n - 1) // 2, n // 2, fmt)
    return out.reshape(shape)
