"""Private Numba kernels for robust aggregation: streaming trimmed mean and median.

Streaming trimmed mean state, per coordinate, for ``b`` values cut per side:
``ext`` of shape ``(2b, P)`` and ``mid`` of shape ``(P,)`` in the accumulator dtype.

* Fill phase (fewer than ``2b`` values seen): client ``n`` is inserted into the
  sorted rows ``0..n-1`` (the same branch-free bubble step as below), so rows
  ``0..n`` stay sorted per column and never need a separate sort.
* Fold phase: rows ``0..b-1`` hold the ``b`` smallest values seen (ascending),
  rows ``b..2b-1`` the ``b`` largest (ascending), ``mid`` the sum of all other
  values. A new value is bubbled up through the low rows (each step keeps the
  minimum, carries the maximum), the carry is bubbled down through the high rows
  (keeps the maximum, carries the minimum), and what falls out is added to
  ``mid``. Every step is a branch-free min/max, so the loop over a block of
  coordinates vectorizes: O(b) work per value, no data-dependent branches.

Because outliers never enter ``mid``, the middle sum suffers no cancellation
against huge trimmed values (a plain ``sum - smallest - largest`` would lose the
honest values next to a 1e30 outlier).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from ._config import kernel, parallel_kernel
from ._kernels import load

TRIM_BLOCK = 1024
"""Coordinates per work item: (2b + 2) rows of it stay in L2 for small b."""

MEDIAN_CHUNK = 1024
"""Coordinates per median work item: a (K, MEDIAN_CHUNK) tile per thread."""


@kernel
def _widen_into(dst: Any, x: Any, fmt: Any) -> None:
    for i in range(dst.shape[0]):
        dst[i] = load(x, i, fmt, dst)


@kernel
def _keep_min(row: Any, carry: Any) -> None:
    for i in range(row.shape[0]):
        a = row[i]
        c = carry[i]
        row[i] = a if a <= c else c
        carry[i] = c if a <= c else a


@kernel
def _keep_max(row: Any, carry: Any) -> None:
    for i in range(row.shape[0]):
        a = row[i]
        c = carry[i]
        row[i] = a if a >= c else c
        carry[i] = c if a >= c else a


@parallel_kernel
def trim_fold(ext: Any, mid: Any, xs: Any, fmt: Any, count: Any) -> None:
    """Fold every client of ``xs`` into the state, ``count`` values having been folded before.

    Per block of coordinates, client by client: while fewer than ``2b`` values are
    in, the client is inserted into the sorted rows (fill phase), then folded
    (fold phase). The state stays in cache across the clients of a call, so a
    batch of clients costs one pass over the state, not one per client.
    """
    b = ext.shape[0] // 2
    rows = 2 * b
    n = mid.shape[0]
    k = len(xs)
    for blk in prange((n + TRIM_BLOCK - 1) // TRIM_BLOCK):
        start = blk * TRIM_BLOCK
        stop = min(n, start + TRIM_BLOCK)
        carry = np.empty(stop - start, mid.dtype)
        mb = mid[start:stop]
        for j in range(k):
            seen = count + j
            if seen < rows:  # sorted insertion: row t keeps the min, the max moves up
                new = ext[seen, start:stop]
                _widen_into(new, xs[j][start:stop], fmt)
                for t in range(seen):
                    _keep_min(ext[t, start:stop], new)
                continue
            _widen_into(carry, xs[j][start:stop], fmt)
            for t in range(b):  # low rows: keep the min, carry the max upward
                _keep_min(ext[t, start:stop], carry)
            for t in range(2 * b - 1, b - 1, -1):  # high rows: keep the max, carry the min
                _keep_max(ext[t, start:stop], carry)
            for i in range(mb.shape[0]):
                mb[i] += carry[i]


@parallel_kernel
def trim_finish(ext: Any, mid: Any, rows: Any, cut: Any, count: Any, out: Any) -> None:
    """``out = (mid + sum(ext[cut:rows-cut])) / (count - 2*cut)``; ext columns sorted."""
    n = mid.shape[0]
    denom = count - 2 * cut
    for blk in prange((n + TRIM_BLOCK - 1) // TRIM_BLOCK):
        start = blk * TRIM_BLOCK
        for i in range(start, min(n, start + TRIM_BLOCK)):
            s = mid[i]
            for r in range(cut, rows - cut):
                s += ext[r, i]
            out[i] = s / denom


@parallel_kernel
def median_network(
    xs: Any, out: Any, lo_idx: Any, hi_idx: Any, left: Any, right: Any, fmt: Any
) -> None:
    """Column medians of the K clients in ``xs`` via a comparator network.

    ``lo_idx``/``hi_idx`` list the comparators (min to ``lo``, max to ``hi``) of a
    network that puts the order statistics ``left`` and ``right`` in place. The
    median is ``(s[left] + s[right]) / 2`` computed in float64 (exact before the
    final rounding); a column with any NaN gives NaN, like ``np.median``.
    """
    k = len(xs)
    n = out.shape[0]
    ncmp = lo_idx.shape[0]
    for blk in prange((n + MEDIAN_CHUNK - 1) // MEDIAN_CHUNK):
        start = blk * MEDIAN_CHUNK
        stop = min(n, start + MEDIAN_CHUNK)
        w = stop - start
        tile = np.empty((k, w), out.dtype)
        nan = np.zeros(w, np.bool_)
        for j in range(k):
            x = xs[j]
            trow = tile[j]
            for i in range(start, stop):
                v = load(x, i, fmt, out)
                trow[i - start] = v
                nan[i - start] |= v != v
        for c in range(ncmp):
            plo = tile[lo_idx[c]]
            phi = tile[hi_idx[c]]
            for t in range(w):
                a = plo[t]
                b = phi[t]
                plo[t] = a if a <= b else b
                phi[t] = b if a <= b else a
        for t in range(w):
            if nan[t]:
                out[start + t] = np.nan
            elif left == right:  # odd count: the middle value itself (x + x could overflow)
                out[start + t] = tile[left, t]
            else:
                out[start + t] = (np.float64(tile[left, t]) + np.float64(tile[right, t])) * 0.5


@parallel_kernel
def median_select(xs: Any, out: Any, left: Any, right: Any, fmt: Any) -> None:
    """Column medians for many clients: per-column quickselect on a K-value buffer."""
    k = len(xs)
    n = out.shape[0]
    for blk in prange((n + MEDIAN_CHUNK - 1) // MEDIAN_CHUNK):
        start = blk * MEDIAN_CHUNK
        stop = min(n, start + MEDIAN_CHUNK)
        buf = np.empty(k, out.dtype)
        for i in range(start, stop):
            has_nan = False
            for j in range(k):
                v = load(xs[j], i, fmt, out)
                buf[j] = v
                has_nan |= v != v
            if has_nan:
                out[i] = np.nan
                continue
            _select(buf, right)
            hi = np.float64(buf[right])
            lo = hi
            if left != right:  # the left statistic is the max of the part below `right`
                lo = np.float64(buf[0])
                for q in range(1, right):
                    lo = max(lo, np.float64(buf[q]))
            out[i] = hi if left == right else (lo + hi) * 0.5


@kernel
def _select(buf: Any, kth: Any) -> None:
    """Partially sort ``buf`` in place so ``buf[kth]`` is its kth order statistic."""
    lo = 0
    hi = buf.shape[0] - 1
    while lo < hi:
        pivot = buf[(lo + hi) // 2]
        i = lo
        j = hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        if kth <= j:
            hi = j
        elif kth >= i:
            lo = i
        else:
            return
