"""Streaming accumulators: validate an update, then fold it; finish gives the aggregate.

Life cycle per round: ``begin(reference)`` with the round's model (names, shapes,
dtypes), ``fold(arrays, weight)`` once per reply (or ``fold_many`` when several
replies are ready), ``finish()`` for the aggregated arrays in the reference
dtypes. Sums are kept in float32 or float64 (``accumulator_dtype``; default
float64 for float64 models, else float32) and cast back at the end.

Every update is checked completely before anything is written: a bad update
raises :class:`UpdateRejected` and leaves the accumulator exactly as it was.
Each accumulator has an internal lock, so worker threads may fold concurrently
(folds into one accumulator run one at a time; parallel kernels inside a fold
use all configured threads).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fedzero.core import FedzeroError

from .._dtypes import ACCUMULATOR_DTYPES, INPUT_DTYPES, default_accumulator_dtype
from ._ops import (
    accumulator_view,
    all_finite,
    clip_factor,
    l2_norm,
    scale_to,
    weighted_fold_many,
)

__all__ = [
    "Accumulator",
    "AccumulatorStateError",
    "UpdateRejected",
    "WeightedMeanAccumulator",
]

Arrays = Mapping[str, Any]


class UpdateRejected(FedzeroError, ValueError):  # noqa: N818 - says what happened to the update
    """A client update failed validation; the accumulator was not modified.

    A :class:`ValueError` too, for callers that catch bad input generally.

    Attributes:
        reason: Human-readable cause (which array, what was expected).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AccumulatorStateError(FedzeroError, RuntimeError):
    """An accumulator was used outside its round: a fold before ``begin``, or after ``finish``.

    Not raised for a bad update (that is :class:`UpdateRejected`); the fix is in
    the calling code: ``begin(reference)`` starts every round.
    """


class Accumulator:
    """Shared validation and life cycle; subclasses implement ``_fold`` and ``_finish``.

    Args:
        accumulator_dtype: float32 or float64, or ``None`` for the default.
        reject_non_finite: Reject updates holding NaN or +-inf (default ``True``).
    """

    def __init__(self, *, accumulator_dtype: Any = None, reject_non_finite: bool = True) -> None:
        if accumulator_dtype is not None and np.dtype(accumulator_dtype) not in ACCUMULATOR_DTYPES:
            msg = f"accumulator_dtype must be float32 or float64, got {accumulator_dtype!r}"
            raise TypeError(msg)
        self._acc_dtype_arg = accumulator_dtype
        self.reject_non_finite = reject_non_finite
        self._specs: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
        self._lock = threading.Lock()
        self._begun = False
        self.count = 0
        self.total_weight = 0.0

    def begin(self, reference: Arrays) -> None:
        """Start a round: remember names, shapes and dtypes; reset all state.

        Args:
            reference: Name to array (or any object with ``shape`` and ``dtype``).

        Raises:
            TypeError: If a dtype is not float16, bfloat16, float32 or float64.
        """
        specs: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
        for name, spec in reference.items():
            dtype = np.dtype(spec.dtype)
            if dtype not in INPUT_DTYPES:
                msg = f"reference array {name!r} has dtype {dtype}; use a float dtype"
                raise TypeError(msg)
            specs[name] = (tuple(int(d) for d in spec.shape), dtype)
        with self._lock:
            self._specs = specs
            self._begun = True
            self.count = 0
            self.total_weight = 0.0
            self._begin()

    def acc_dtype(self, name: str) -> np.dtype[Any]:
        """Accumulator dtype used for array ``name``."""
        if self._acc_dtype_arg is not None:
            chosen: np.dtype[Any] = np.dtype(self._acc_dtype_arg)
            return chosen
        return default_accumulator_dtype(self._specs[name][1])

    def validate(self, arrays: Arrays, weight: float = 1.0) -> dict[str, np.ndarray]:
        """Check an update against the reference; return it as name to ndarray.

        Raises:
            UpdateRejected: On wrong names, dtypes, shapes, layout, non-finite
                values (if rejected) or a weight that is not finite and > 0.
            AccumulatorStateError: If ``begin`` was never called.
        """
        if not self._begun:
            msg = "begin(reference) must be called before folding updates"
            raise AccumulatorStateError(msg)
        w = float(weight)
        if not math.isfinite(w) or w <= 0:
            raise UpdateRejected(f"weight must be finite and > 0, got {weight!r}")
        missing = [n for n in self._specs if n not in arrays]
        extra = [n for n in arrays if n not in self._specs]
        if missing or extra:
            raise UpdateRejected(
                f"array names differ from the reference: missing {missing}, unexpected {extra}"
            )
        out: dict[str, np.ndarray] = {}
        for name, (shape, dtype) in self._specs.items():
            value = arrays[name]
            if not isinstance(value, np.ndarray):
                if not hasattr(value, "__array__"):
                    raise UpdateRejected(
                        f"array {name!r} is a {type(value).__name__}, not an array"
                    )
                value = np.asarray(value)
            if value.dtype != dtype:
                raise UpdateRejected(f"array {name!r} has dtype {value.dtype}, expected {dtype}")
            if value.shape != shape:
                raise UpdateRejected(f"array {name!r} has shape {value.shape}, expected {shape}")
            if not value.flags.c_contiguous:
                raise UpdateRejected(f"array {name!r} is not C-contiguous")
            if self.reject_non_finite and not all_finite(value):
                raise UpdateRejected(f"array {name!r} contains NaN or infinity")
            out[name] = value
        return out

    def fold(self, arrays: Arrays, weight: float = 1.0, *, key: Hashable | None = None) -> None:
        """Validate one update, then fold it in.

        Args:
            arrays: Name to array, same names/shapes/dtypes as the reference.
            weight: Positive finite weight (e.g. the number of examples).
            key: Sortable identity of the sender (e.g. its node id); methods that
                pick updates (Krum) break ties by it. Default: arrival order.

        Raises:
            UpdateRejected: If the update is invalid (state unchanged).
            AccumulatorStateError: Before ``begin``, or after ``finish`` of a
                :class:`WeightedMeanAccumulator` (whose result reuses its sums).
        """
        update = self.validate(arrays, weight)
        with self._lock:
            self._check_capacity(1)
            self._fold([update], [float(weight)])
            self._note_keys([self.count if key is None else key])
            self.count += 1
            self.total_weight += float(weight)

    def fold_many(
        self, updates: Sequence[tuple[Arrays, float]], *, keys: Sequence[Hashable] | None = None
    ) -> None:
        """Validate several ready updates, then fold them in one pass where possible.

        All updates are validated first; if any is invalid, none is folded.

        Args:
            updates: ``(arrays, weight)`` pairs, as for :meth:`fold`.
            keys: One key per update (see :meth:`fold`), or ``None``.

        Raises:
            UpdateRejected: Naming the index of the first invalid update.
            ValueError: If ``keys`` has the wrong length.
        """
        if keys is not None and len(keys) != len(updates):
            msg = f"got {len(keys)} keys for {len(updates)} updates; pass one key per update"
            raise ValueError(msg)
        checked = []
        for j, (arrays, weight) in enumerate(updates):
            try:
                checked.append(self.validate(arrays, weight))
            except UpdateRejected as exc:
                raise UpdateRejected(f"update {j}: {exc.reason}") from exc
        if not checked:
            return
        weights = [float(w) for _, w in updates]
        with self._lock:
            self._check_capacity(len(checked))
            self._fold(checked, weights)
            self._note_keys(list(keys) if keys else [self.count + j for j in range(len(checked))])
            self.count += len(checked)
            self.total_weight += sum(weights)

    def finish(self) -> dict[str, np.ndarray]:
        """Return the aggregate, one array per reference name, in the reference dtype.

        Raises:
            ValueError: If no update was folded.
        """
        with self._lock:
            if self.count == 0:
                msg = "no update was folded; nothing to aggregate"
                raise ValueError(msg)
            return self._finish()

    def _cast_out(self, name: str, acc: npt.NDArray[Any], factor: float = 1.0) -> np.ndarray:
        shape, dtype = self._specs[name]
        if dtype in ACCUMULATOR_DTYPES:
            out = np.empty(shape, dtype)
            scale_to(accumulator_view(out), acc.reshape(-1), factor)
            return out
        narrow: np.ndarray = (acc.reshape(shape) * acc.dtype.type(factor)).astype(dtype)
        return narrow

    def _check_capacity(self, incoming: int) -> None:
        """Raise :class:`UpdateRejected` if ``incoming`` more updates do not fit."""

    def _note_keys(self, keys: list[Hashable]) -> None:
        """Remember the keys of the updates just folded (only methods that pick updates)."""

    def _begin(self) -> None:
        raise NotImplementedError

    def _fold(self, updates: list[dict[str, np.ndarray]], weights: list[float]) -> None:
        raise NotImplementedError

    def _finish(self) -> dict[str, np.ndarray]:
        raise NotImplementedError


class WeightedMeanAccumulator(Accumulator):
    """FedAvg: ``sum(w_i * x_i) / sum(w_i)``, streaming, one model-sized buffer.

    Args:
        accumulator_dtype: float32 or float64, or ``None`` for the default.
        reject_non_finite: Reject updates holding NaN or +-inf.
        clip_norm: If set, each update is scaled to L2 norm (over all arrays) at
            most this value before weighting; the scale is folded into the weight,
            so client buffers are never written.
    """

    def __init__(
        self,
        *,
        accumulator_dtype: Any = None,
        reject_non_finite: bool = True,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(accumulator_dtype=accumulator_dtype, reject_non_finite=reject_non_finite)
        if clip_norm is not None:
            clip_factor(0.0, clip_norm)  # validates the bound
        self.clip_norm = clip_norm
        self._acc: dict[str, np.ndarray] = {}
        self._result: dict[str, np.ndarray] | None = None

    def _begin(self) -> None:
        self._acc = {n: np.zeros(s, self.acc_dtype(n)) for n, (s, _) in self._specs.items()}
        self._result = None

    def _fold(self, updates: list[dict[str, np.ndarray]], weights: list[float]) -> None:
        if self._result is not None:
            msg = "finish() was called: begin() the next round before folding"
            raise AccumulatorStateError(msg)
        scaled = list(weights)
        if self.clip_norm is not None:
            for j, update in enumerate(updates):
                scaled[j] *= clip_factor(l2_norm(list(update.values())), self.clip_norm)
        for name, acc in self._acc.items():
            weighted_fold_many(acc, [u[name] for u in updates], scaled)

    def _finish(self) -> dict[str, np.ndarray]:
        """Scale the sums into the mean; where the dtypes match, in the sum's own buffer.

        Reusing the buffer saves a model-sized allocation at the end of every
        round. Calling ``finish`` again returns the same arrays; folding after
        ``finish`` needs a new ``begin``.
        """
        if self._result is not None:
            return self._result
        out: dict[str, np.ndarray] = {}
        factor = 1.0 / self.total_weight
        for name, acc in self._acc.items():
            shape, dtype = self._specs[name]
            if acc.dtype == dtype:
                flat = acc.reshape(-1)
                scale_to(flat, flat, factor)
                out[name] = acc.reshape(shape)
            else:
                out[name] = self._cast_out(name, acc, factor)
        self._result = out
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of accumulator state."""
        return sum(a.nbytes for a in self._acc.values())
