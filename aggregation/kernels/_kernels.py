"""Private Numba kernels: weighted folds, finiteness, norms, distances, scaling.

Plain loops over 1-D C-contiguous arrays. The public wrappers in ``_ops`` validate
and allocate; nothing here checks its inputs.

Input formats (``fmt``): ``FMT_NATIVE`` for float32/float64 arrays; half
precision arrives as its raw bits in a uint16 view (Numba cannot read float16 or
ml_dtypes' bfloat16), ``FMT_BF16`` or ``FMT_F16`` says how to widen them.
:func:`load` widens element ``i`` to the accumulator's dtype; for float inputs it
ignores ``fmt``, so the float32 fast path has no branch at all.

Parallel kernels split coordinates into fixed blocks of ``BLOCK``: each ``prange``
iteration writes only its own block (or its own row of a partials array that is
summed serially afterwards), so results do not depend on the thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange, types
from numba.extending import intrinsic, overload

from ._config import BLOCK, kernel, parallel_kernel

FMT_NATIVE = 0
FMT_BF16 = 1
FMT_F16 = 2

_TWO_POW_M24 = np.float32(2.0**-24)


def _bits_to_f32_typer(typingctx: Any, bits: Any) -> Any:
    """Reinterpret a uint32 as the float32 with the same bits (no conversion)."""
    if not isinstance(bits, types.Integer) or getattr(bits, "bitwidth", 0) != 32:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(bits), codegen


_bits_to_f32: Any = intrinsic(_bits_to_f32_typer)


@kernel
def _bf16_to_f32(h: Any) -> Any:
    return _bits_to_f32(np.uint32(np.uint32(h) << np.uint32(16)))


@kernel
def _f16_to_f32(h: Any) -> Any:
    hv = np.uint32(h)
    sign = (hv & np.uint32(0x8000)) << np.uint32(16)
    e = (hv >> np.uint32(10)) & np.uint32(0x1F)
    m = hv & np.uint32(0x3FF)
    if e == 0:  # zero or subnormal: m * 2**-24 is exact in float32
        f = np.float32(m) * _TWO_POW_M24
        return -f if sign else f
    if e == 31:
        return _bits_to_f32(np.uint32(sign | np.uint32(0x7F800000) | (m << np.uint32(13))))
    return _bits_to_f32(
        np.uint32(sign | ((e + np.uint32(112)) << np.uint32(23)) | (m << np.uint32(13)))
    )


def load(x: Any, i: Any, fmt: Any, like: Any) -> Any:
    """Element ``i`` of ``x`` widened to the dtype of array ``like`` (jit only)."""
    raise NotImplementedError  # pragma: no cover - replaced by the overload below


@overload(load)
def _load_overload(x: Any, i: Any, fmt: Any, like: Any) -> Any:
    ty = like.dtype
    if isinstance(x.dtype, types.Float):

        def impl_float(x: Any, i: Any, fmt: Any, like: Any) -> Any:
            return ty(x[i])

        return impl_float
    if x.dtype == types.uint16:

        def impl_half(x: Any, i: Any, fmt: Any, like: Any) -> Any:
            if fmt == FMT_BF16:
                return ty(_bf16_to_f32(x[i]))
            return ty(_f16_to_f32(x[i]))

        return impl_half
    return None


def finite_at(x: Any, i: Any, fmt: Any) -> Any:
    """Whether element ``i`` of ``x`` is finite (jit only)."""
    raise NotImplementedError  # pragma: no cover - replaced by the overload below


@overload(finite_at)
def _finite_at_overload(x: Any, i: Any, fmt: Any) -> Any:
    if isinstance(x.dtype, types.Float):

        def impl_float(x: Any, i: Any, fmt: Any) -> Any:
            v = x[i]
            return v - v == 0  # False for inf (inf - inf = nan) and nan

        return impl_float
    if x.dtype == types.uint16:

        def impl_half(x: Any, i: Any, fmt: Any) -> Any:
            mask = 0x7F80 if fmt == FMT_BF16 else 0x7C00
            return (np.int64(x[i]) & mask) != mask

        return impl_half
    return None


@kernel
def _axpy(a: Any, x: Any, w: Any, fmt: Any) -> None:
    """``a += w * x`` over two equal-length block slices (0-based loop: vectorizes)."""
    for i in range(a.shape[0]):
        a[i] += w * load(x, i, fmt, a)


@parallel_kernel
def fold(acc: Any, x: Any, w: Any, fmt: Any) -> None:
    """``acc += w * x`` (x widened to acc's dtype first)."""
    n = acc.shape[0]
    for blk in prange((n + BLOCK - 1) // BLOCK):
        start = blk * BLOCK
        stop = min(n, start + BLOCK)
        _axpy(acc[start:stop], x[start:stop], w, fmt)


@parallel_kernel
def fold_many(acc: Any, xs: Any, ws: Any, fmt: Any) -> None:
    """``acc += sum_j ws[j] * xs[j]`` in one pass over ``acc``.

    Per coordinate the additions happen in the order j = 0, 1, ..., so the result
    is bit-identical to ``len(xs)`` calls of :func:`fold`.
    """
    n = acc.shape[0]
    k = len(xs)
    for blk in prange((n + BLOCK - 1) // BLOCK):
        start = blk * BLOCK
        stop = min(n, start + BLOCK)
        a = acc[start:stop]
        for j in range(k):
            _axpy(a, xs[j][start:stop], ws[j], fmt)


@parallel_kernel
def all_finite(x: Any, fmt: Any) -> Any:
    """Whether no element of ``x`` is NaN or +-inf."""
    n = x.shape[0]
    nblocks = (n + BLOCK - 1) // BLOCK
    ok = np.ones(nblocks, np.bool_)
    for blk in prange(nblocks):
        start = blk * BLOCK
        part = x[start : min(n, start + BLOCK)]
        bad = 0
        for i in range(part.shape[0]):
            bad += not finite_at(part, i, fmt)
        ok[blk] = bad == 0
    return ok.all()


@parallel_kernel
def sum_squares(x: Any, fmt: Any) -> Any:
    """Sum of squares in float64; deterministic (fixed blocks, serial total)."""
    n = x.shape[0]
    nblocks = (n + BLOCK - 1) // BLOCK
    part = np.zeros(nblocks, np.float64)
    like = np.empty(0, np.float64)
    for blk in prange(nblocks):
        start = blk * BLOCK
        xb = x[start : min(n, start + BLOCK)]
        s = 0.0
        for i in range(xb.shape[0]):
            v = load(xb, i, fmt, like)
            s += v * v
        part[blk] = s
    total = 0.0
    for blk in range(nblocks):
        total += part[blk]
    return total


@parallel_kernel
def sq_distances(x: Any, others: Any, fmt: Any) -> Any:
    """Squared L2 distances (float64) from ``x`` to each array of ``others``, one pass."""
    n = x.shape[0]
    k = len(others)
    nblocks = (n + BLOCK - 1) // BLOCK
    part = np.zeros((nblocks, k), np.float64)
    like = np.empty(0, np.float64)
    for blk in prange(nblocks):
        start = blk * BLOCK
        stop = min(n, start + BLOCK)
        xb = x[start:stop]
        for j in range(k):
            yb = others[j][start:stop]
            s = 0.0
            for i in range(xb.shape[0]):
                d = load(xb, i, fmt, like) - load(yb, i, fmt, like)
                s += d * d
            part[blk, j] = s
    total = np.zeros(k, np.float64)
    for blk in range(nblocks):
        for j in range(k):
            total[j] += part[blk, j]
    return total


@parallel_kernel
def scale_into(out: Any, acc: Any, factor: Any) -> None:
    """``out = acc * factor`` (cast to out's dtype on store)."""
    n = acc.shape[0]
    for blk in prange((n + BLOCK - 1) // BLOCK):
        start = blk * BLOCK
        stop = min(n, start + BLOCK)
        ob = out[start:stop]
        ab = acc[start:stop]
        for i in range(ab.shape[0]):
            ob[i] = ab[i] * factor
