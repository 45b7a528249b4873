"""Private Numba kernel for Krum: the Gram matrix of K clients in one pass over memory.

Squared distances come from ``||a - b||^2 = |a|^2 + |b|^2 - 2 a.b``: one read of
every client (instead of the ``K (K - 1) / 2`` pairwise passes of the direct
formula), widened to float64, whose products of float32 (or half) values are
exact. Coordinates go in fixed work items of :data:`GRAM_ITEM`, each in tiles
of :data:`GRAM_TILE` that stay in cache; each item writes its own ``(K, K)``
partial, summed in a fixed order afterwards, so the result does not depend on
the thread count.

Cancellation: when clients are close to each other and far from the origin,
``|a|^2 + |b|^2`` and ``2 a.b`` nearly cancel. Every tile is therefore centred
first, per coordinate, on the median of three clients' values (an origin next
to the clients, which one outlier cannot drag away), which leaves the norms of
the order of the distances. The wrapper bounds what rounding error remains
and recomputes any pair whose bound is not small with the direct formula.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from ._config import kernel, parallel_kernel, reassoc_kernel
from ._kernels import load

GRAM_TILE = 512
"""Coordinates per tile: K rows of float64 stay in L1/L2 while every pair is summed."""

GRAM_ITEM = 65536
"""Coordinates per parallel work item, unless many clients call for fewer, longer items."""


@reassoc_kernel
def _dot2x4(a0: Any, a1: Any, b: Any, j: Any, w: Any) -> Any:
    """Dot products of rows ``a0, a1`` with rows ``b[j..j+3]``: 6 loads per 8 FMAs.

    Vectorized (the sums reassociated) with fused multiply-adds: a bound on the
    error of the plain loop bounds this one too.
    """
    b0 = b[j]
    b1 = b[j + 1]
    b2 = b[j + 2]
    b3 = b[j + 3]
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
    for i in range(w):
        x0 = a0[i]
        x1 = a1[i]
        y0 = b0[i]
        y1 = b1[i]
        y2 = b2[i]
        y3 = b3[i]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s03 += x0 * y3
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s13 += x1 * y3
    return s00, s01, s02, s03, s10, s11, s12, s13


@kernel
def _widen(row: Any, x: Any, fmt: Any, w: Any) -> None:
    for i in range(w):
        row[i] = load(x, i, fmt, row)


@kernel
def _fill_centred(tile: Any, centre: Any, xs: Any, s: Any, w: Any, fmt: Any) -> None:
    """Widen clients' coordinates ``s:s+w`` into the tile, minus a per-coordinate centre.

    The centre is the median of clients 0, 1 and 2 (client 0 if there are fewer).
    """
    k = len(xs)
    first = min(k, 3)
    for j in range(first):
        _widen(tile[j], xs[j][s : s + w], fmt, w)
    r0 = tile[0]
    if k >= 3:
        r1 = tile[1]
        r2 = tile[2]
        for i in range(w):
            lo = min(r0[i], r1[i])
            hi = max(r0[i], r1[i])
            centre[i] = max(lo, min(hi, r2[i]))
    else:
        for i in range(w):
            centre[i] = r0[i]
    for j in range(first):
        row = tile[j]
        for i in range(w):
            row[i] -= centre[i]
    for j in range(first, k):
        row = tile[j]
        x = xs[j][s : s + w]
        for i in range(w):
            row[i] = load(x, i, fmt, row) - centre[i]


@parallel_kernel
def gram_partials(xs: Any, fmt: Any, out: Any, item: Any) -> None:
    """``out[item, a, b]`` (``a <= b``; ``K`` rounded up to a multiple of 4): centred dots."""
    k = len(xs)
    n = xs[0].shape[0]
    for it in prange(out.shape[0]):
        start = it * item
        stop = min(n, start + item)
        kp = (k + 3) // 4 * 4  # zero rows up to a multiple of 4: 2 x 4 blocks of pairs
        tile = np.zeros((kp, GRAM_TILE), np.float64)
        centre = np.empty(GRAM_TILE, np.float64)
        g = out[it]
        for s in range(start, stop, GRAM_TILE):
            w = min(stop, s + GRAM_TILE) - s
            _fill_centred(tile, centre, xs, s, w, fmt)
            for a in range(0, kp, 2):
                a0 = tile[a]
                a1 = tile[a + 1]
                for b in range(a - a % 4, kp, 4):
                    d = _dot2x4(a0, a1, tile, b, w)
                    for q in range(4):
                        g[a, b + q] += d[q]
                        g[a + 1, b + q] += d[4 + q]
