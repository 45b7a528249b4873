"""Public kernel wrappers: weighted folds, finiteness, norms, clipping.

Each wrapper checks types, dtypes, shapes and contiguity, raises ``TypeError`` or
``ValueError`` with what to do about it, allocates outputs and launches the kernel
through ``_config.parallel_launch`` (thread count, and
the lock that keeps Numba's ``workqueue`` layer safe from concurrent launches).

Supported input dtypes: float16, bfloat16 (``ml_dtypes``), float32, float64.
Accumulators are float32 or float64, never half precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import typed

from .._dtypes import ACCUMULATOR_DTYPES, BFLOAT16, INPUT_DTYPES
from . import _kernels as k
from ._config import JIT_PENDING, parallel_launch

__all__ = [
    "all_finite",
    "clip_by_norm",
    "clip_factor",
    "l2_norm",
    "scale_to",
    "weighted_fold",
    "weighted_fold_many",
]

FloatArray = npt.NDArray[np.floating[Any]]

_NUMPY_CHUNK = 1 << 20
"""Elements per step of the NumPy stand-ins (bounds their temporaries)."""


def input_view(x: Any, what: str = "x") -> tuple[npt.NDArray[Any], int]:
    """Validate a client array; return its flat read-only kernel view and format.

    Args:
        x: A C-contiguous numpy array of a dtype in ``INPUT_DTYPES``.
        what: Name used in error messages.

    Returns:
        ``(view, fmt)``: a 1-D read-only view (uint16 bits for half precision) and
        the ``FMT_*`` code the kernels widen it with.

    Raises:
        TypeError: If ``x`` is not an ndarray of a supported dtype.
        ValueError: If ``x`` is not C-contiguous.
    """
    if not isinstance(x, np.ndarray):
        msg = f"{what} must be a numpy.ndarray, got {type(x).__name__}; wrap it with np.asarray"
        raise TypeError(msg)
    if x.dtype not in INPUT_DTYPES:
        names = ", ".join(str(d) for d in INPUT_DTYPES)
        msg = f"{what} has dtype {x.dtype}; supported dtypes are {names} (cast with .astype)"
        raise TypeError(msg)
    if not x.flags.c_contiguous:
        msg = f"{what} must be C-contiguous; pass np.ascontiguousarray({what})"
        raise ValueError(msg)
    if x.dtype == BFLOAT16:
        flat, fmt = x.reshape(-1).view(np.uint16), k.FMT_BF16
    elif x.dtype == np.float16:
        flat, fmt = x.reshape(-1).view(np.uint16), k.FMT_F16
    else:
        flat, fmt = x.reshape(-1).view(), k.FMT_NATIVE
    flat.flags.writeable = False  # one compiled variant per dtype, for frames and arrays alike
    return flat, fmt


def accumulator_view(acc: Any, what: str = "acc") -> FloatArray:
    """Validate an accumulator array and return its flat writable view.

    Raises:
        TypeError: If ``acc`` is not a float32/float64 ndarray.
        ValueError: If ``acc`` is not C-contiguous or not writeable.
    """
    if not isinstance(acc, np.ndarray):
        msg = f"{what} must be a numpy.ndarray, got {type(acc).__name__}"
        raise TypeError(msg)
    if acc.dtype not in ACCUMULATOR_DTYPES:
        msg = f"{what} has dtype {acc.dtype}; accumulate in float32 or float64"
        raise TypeError(msg)
    if not acc.flags.c_contiguous or not acc.flags.writeable:
        msg = f"{what} must be a writeable C-contiguous array; allocate it with np.zeros"
        raise ValueError(msg)
    flat: FloatArray = acc.reshape(-1)
    return flat


def inputs_list(
    xs: Sequence[Any], shape: tuple[int, ...] | None = None, what: str = "xs"
) -> tuple[typed.List[Any], int, tuple[int, ...]]:
    """Validate same-dtype, same-shape client arrays; return a Numba typed list.

    Raises:
        TypeError: On an unsupported or mixed dtype.
        ValueError: On an empty sequence or a shape mismatch.
    """
    views, fmt, checked = _input_views(xs, shape, what)
    return typed.List(views), fmt, checked


def _input_views(
    xs: Sequence[Any], shape: tuple[int, ...] | None, what: str
) -> tuple[list[Any], int, tuple[int, ...]]:
    """:func:`inputs_list` as a plain list (no Numba object: no compiler lock)."""
    if len(xs) == 0:
        msg = f"{what} is empty; pass at least one array"
        raise ValueError(msg)
    views = []
    fmt0 = -1
    dtype0 = None
    for j, x in enumerate(xs):
        view, fmt = input_view(x, f"{what}[{j}]")
        if dtype0 is None:
            dtype0, fmt0 = x.dtype, fmt
            shape = x.shape if shape is None else shape
        if x.dtype != dtype0:
            msg = f"{what}[{j}] has dtype {x.dtype} but {what}[0] has {dtype0}; cast to one dtype"
            raise TypeError(msg)
        if x.shape != shape:
            msg = f"{what}[{j}] has shape {x.shape}, expected {shape}"
            raise ValueError(msg)
        views.append(view)
    return views, fmt0, tuple(shape or ())


def _finite_weight(weight: float, what: str = "weight") -> float:
    w = float(weight)
    if not math.isfinite(w):
        msg = f"{what} must be finite, got {weight!r}"
        raise ValueError(msg)
    return w


def weighted_fold(acc: FloatArray, x: npt.NDArray[Any], weight: float) -> None:
    """Fold one client into a weighted sum in place: ``acc += weight * x``.

    ``x`` is widened to ``acc``'s dtype, then multiplied by ``weight`` (rounded to
    ``acc``'s dtype) and added, all in ``acc``'s precision. NaN/inf propagate.

    Args:
        acc: float32 or float64 accumulator, C-contiguous, same shape as ``x``.
        x: float16, bfloat16, float32 or float64 array (read-only is fine).
        weight: Finite scale factor, e.g. the client's number of examples.

    Raises:
        TypeError: On an unsupported dtype.
        ValueError: On a shape mismatch, a non-contiguous array or a non-finite weight.
    """
    flat_acc = accumulator_view(acc)
    view, fmt = input_view(x)
    if x.shape != acc.shape:
        msg = f"x has shape {x.shape} but acc has {acc.shape}; they must match"
        raise ValueError(msg)
    w = acc.dtype.type(_finite_weight(weight))
    with parallel_launch():
        k.fold(flat_acc, view, w, fmt)


def weighted_fold_many(
    acc: FloatArray, xs: Sequence[npt.NDArray[Any]], weights: Sequence[float]
) -> None:
    """Fold several clients in one pass over ``acc``: ``acc += sum_j weights[j] * xs[j]``.

    Bit-identical to calling :func:`weighted_fold` for each client in order, but
    reads and writes ``acc`` once instead of ``len(xs)`` times (memory-bound, so
    about that much faster for large arrays).

    Args:
        acc: float32 or float64 accumulator, C-contiguous.
        xs: Client arrays of one supported dtype, each shaped like ``acc``.
        weights: One finite weight per client.

    Raises:
        TypeError: On an unsupported or mixed dtype.
        ValueError: On shape/length mismatches or a non-finite weight.
    """
    flat_acc = accumulator_view(acc)
    if len(weights) != len(xs):
        msg = f"got {len(xs)} arrays but {len(weights)} weights; pass one weight per array"
        raise ValueError(msg)
    views, fmt, _ = _input_views(xs, acc.shape, "xs")
    ws = np.array([_finite_weight(w, f"weights[{j}]") for j, w in enumerate(weights)], acc.dtype)
    if ("fold", str(xs[0].dtype), str(acc.dtype)) in JIT_PENDING:
        _fold_many_numpy(flat_acc, [x.reshape(-1) for x in xs], ws)
        return
    with parallel_launch():
        k.fold_many(flat_acc, typed.List(views), ws, fmt)


def _fold_many_numpy(acc: FloatArray, xs: list[npt.NDArray[Any]], ws: FloatArray) -> None:
    """:func:`weighted_fold_many` in NumPy, bit for bit: ``acc += w_j * widen(x_j)`` in order."""
    for start in range(0, acc.shape[0], _NUMPY_CHUNK):
        part = acc[start : start + _NUMPY_CHUNK]
        for x, w in zip(xs, ws, strict=True):
            part += w * x[start : start + _NUMPY_CHUNK].astype(acc.dtype)


def all_finite(x: npt.NDArray[Any]) -> bool:
    """Return whether ``x`` holds no NaN and no +-inf (parallel, releases the GIL).

    Raises:
        TypeError: On an unsupported dtype.
        ValueError: If ``x`` is not C-contiguous.
    """
    view, fmt = input_view(x)
    if ("finite", str(x.dtype)) in JIT_PENDING:
        if fmt == k.FMT_NATIVE:
            return all(
                np.isfinite(view[i : i + _NUMPY_CHUNK]).all()
                for i in range(0, view.size, _NUMPY_CHUNK)
            )
        mask = 0x7F80 if fmt == k.FMT_BF16 else 0x7C00
        return not any(
            ((view[i : i + _NUMPY_CHUNK] & mask) == mask).any()
            for i in range(0, view.size, _NUMPY_CHUNK)
        )
    with parallel_launch():
        return bool(k.all_finite(view, fmt))


def scale_to(out: FloatArray, acc: FloatArray, factor: float) -> None:
    """``out = acc * factor`` (flat float32/float64 arrays; the product in float64, then cast)."""
    if ("scale", str(acc.dtype), str(out.dtype)) in JIT_PENDING:
        for i in range(0, acc.shape[0], _NUMPY_CHUNK):
            part = slice(i, i + _NUMPY_CHUNK)
            np.multiply(acc[part], np.float64(factor), out=out[part], casting="same_kind")
        return
    with parallel_launch():
        k.scale_into(out, acc, factor)


def l2_norm(arrays: Sequence[npt.NDArray[Any]] | npt.NDArray[Any]) -> float:
    """L2 norm of one array, or of several arrays taken as one flat vector.

    Computed in float64 with a fixed block order, so the result does not depend
    on the thread count.

    Raises:
        TypeError: On an unsupported dtype.
        ValueError: If an array is not C-contiguous.
    """
    seq = [arrays] if isinstance(arrays, np.ndarray) else list(arrays)
    total = 0.0
    for j, x in enumerate(seq):
        view, fmt = input_view(x, f"arrays[{j}]")
        with parallel_launch():
            total += float(k.sum_squares(view, fmt))
    return math.sqrt(total)


def clip_factor(norm: float, max_norm: float) -> float:
    """Scale that brings an update of L2 norm ``norm`` to at most ``max_norm``.

    Returns ``min(1, max_norm / norm)`` (1 for a zero norm). Multiply it into a
    fold weight to clip without touching (possibly read-only) client buffers.

    Raises:
        ValueError: If ``max_norm`` is not a positive finite number.
    """
    if not math.isfinite(max_norm) or max_norm <= 0:
        msg = f"max_norm must be a positive finite number, got {max_norm!r}"
        raise ValueError(msg)
    if norm <= max_norm:
        return 1.0
    return max_norm / norm


def clip_by_norm(x: npt.NDArray[Any], max_norm: float) -> FloatArray:
    """Return ``x`` scaled so that its L2 norm is at most ``max_norm``.

    Args:
        x: Array of a supported dtype.
        max_norm: Positive finite bound ``c``.

    Returns:
        A new array (float32, or float64 for float64 input) equal to
        ``x * min(1, c / ||x||)``.
    """
    factor = clip_factor(l2_norm(x), max_norm)
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    out = np.zeros(x.shape, dtype)
    weighted_fold(out, x, factor)
    return out
