"""Public Krum wrappers: squared distances by the Gram identity, scores, selection.

Distances come from one pass over the clients (``_kernels_gram``): ``d(a, b) =
n_a + n_b - 2 g_ab`` on coordinates centred per tile. What rounding error is
left is bounded per pair; a pair whose bound exceeds :data:`DISTANCE_RTOL` of
its distance (clients nearly equal but far from the centre, or values near the
float64 range) is recomputed with the direct formula ``sum((a - b)**2)``, so
every distance is within that relative error of the exact one.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import structlog
from numba import typed

from . import _kernels as k
from . import _kernels_gram as kg
from ._config import parallel_launch
from ._ops import inputs_list

__all__ = [
    "DISTANCE_RTOL",
    "KrumInputs",
    "gram_sq_distances",
    "krum_scores",
    "krum_select",
    "pairwise_sq_distances",
]

log = structlog.get_logger(__name__)

DISTANCE_RTOL: Final = 1e-9
"""Relative error every Krum distance is guaranteed within (else recomputed directly)."""

_PARTIALS_BYTES: Final = 1 << 25  # cap on the per-item (K, K) partials: 32 MiB
_EPS: Final = float(np.finfo(np.float64).eps)

KrumInputs = Sequence[tuple[typed.List[Any], int]]
"""Per array: the K clients' validated kernel views and their format (from ``inputs_list``)."""


def _gram(views: typed.List[Any], fmt: int) -> tuple[npt.NDArray[np.float64], float]:
    """Centred Gram matrix (symmetric) of one array over K clients, and its error factor."""
    n = int(views[0].shape[0])
    kp = (len(views) + 3) // 4 * 4
    tiles = max(1, math.ceil(n / kg.GRAM_TILE))
    most = max(1, _PARTIALS_BYTES // (8 * kp * kp))  # many clients: fewer, longer items
    per_item = math.ceil(tiles / min(math.ceil(n / kg.GRAM_ITEM) or 1, most))
    items = math.ceil(tiles / per_item)
    out = np.zeros((items, kp, kp), np.float64)
    with parallel_launch():
        kg.gram_partials(views, fmt, out, per_item * kg.GRAM_TILE)
    upper = np.triu(out.sum(axis=0)[: len(views), : len(views)])
    gram: npt.NDArray[np.float64] = upper + np.triu(upper, 1).T
    chain = kg.GRAM_TILE + per_item + items  # longest chain of additions into one entry
    return gram, chain * _EPS / (1.0 - chain * _EPS)


def gram_sq_distances(inputs: KrumInputs) -> npt.NDArray[np.float64]:
    """Squared L2 distances between K clients over several arrays taken as one vector.

    Args:
        inputs: Per array, the clients' views and format (validated by ``inputs_list``).

    Returns:
        ``(K, K)`` float64, symmetric, zero diagonal; each entry within
        :data:`DISTANCE_RTOL` of the exact distance.
    """
    n = len(inputs[0][0])
    dist = np.zeros((n, n), np.float64)
    bound = np.zeros((n, n), np.float64)
    for views, fmt in inputs:
        gram, gamma = _gram(views, fmt)
        norms = np.diag(gram)
        part = norms[:, None] + norms[None, :] - 2.0 * gram
        dist += part
        bound += (2.0 * gamma + 8.0 * _EPS) * (norms[:, None] + norms[None, :])
        bound += 2.0 * _EPS * np.abs(part)
    with np.errstate(invalid="ignore"):
        close = bound * (1.0 + DISTANCE_RTOL) <= DISTANCE_RTOL * dist
        ok = np.isfinite(dist) & np.isfinite(bound) & close
    np.fill_diagonal(ok, True)
    np.fill_diagonal(dist, 0.0)
    redo = np.argwhere(np.triu(~ok, 1))
    if redo.size:
        _direct(inputs, dist, redo)
        log.debug("krum_distances_recomputed", pairs=len(redo), clients=n)
    return dist


def _direct(inputs: KrumInputs, dist: npt.NDArray[np.float64], pairs: Any) -> None:
    """Recompute ``dist`` at ``pairs`` (a < b) with the direct formula, one pass per row."""
    for a in np.unique(pairs[:, 0]):
        others = [int(b) for b in pairs[pairs[:, 0] == a, 1]]
        row = np.zeros(len(others), np.float64)
        for views, fmt in inputs:
            with parallel_launch():
                row += k.sq_distances(views[int(a)], typed.List([views[b] for b in others]), fmt)
        dist[a, others] = row
        dist[others, a] = row


def pairwise_sq_distances(xs: Sequence[npt.NDArray[Any]]) -> npt.NDArray[np.float64]:
    """Matrix of squared L2 distances between clients (float64, symmetric, zero diagonal).

    One pass over the clients (Gram identity, see :func:`gram_sq_distances`);
    each entry is within :data:`DISTANCE_RTOL` of the exact distance.

    Raises:
        TypeError: On an unsupported or mixed dtype.
        ValueError: On an empty sequence or a shape mismatch.
    """
    views, fmt, _ = inputs_list(xs)
    return gram_sq_distances([(views, fmt)])


def krum_scores(dist: npt.NDArray[np.float64], num_malicious: int) -> npt.NDArray[np.float64]:
    """Krum score of each client: sum of its ``K - f - 2`` smallest distances to others.

    Flower's rule: ``max(1, K - f - 2)`` closest neighbours, self excluded.

    Args:
        dist: ``(K, K)`` squared-distance matrix (e.g. from :func:`pairwise_sq_distances`).
        num_malicious: ``f``, the number of Byzantine clients tolerated.

    Raises:
        ValueError: On a non-square matrix or a negative ``num_malicious``.
    """
    d = np.asarray(dist, np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        msg = f"dist must be a square (K, K) matrix, got shape {d.shape}"
        raise ValueError(msg)
    if num_malicious < 0:
        msg = f"num_malicious must be >= 0, got {num_malicious}"
        raise ValueError(msg)
    n = d.shape[0]
    if n == 1:
        return np.zeros(1, np.float64)
    closest = min(max(1, n - num_malicious - 2), n - 1)
    others = np.where(np.eye(n, dtype=bool), np.inf, d)
    part = np.partition(others, closest - 1, axis=1)[:, :closest]
    scores: npt.NDArray[np.float64] = np.sort(part, axis=1).sum(axis=1)
    return scores


def krum_select(
    dist: npt.NDArray[np.float64],
    num_malicious: int,
    num_to_keep: int = 1,
    keys: Sequence[Hashable] | None = None,
) -> list[int]:
    """Indices of the ``num_to_keep`` clients with the lowest Krum scores.

    Args:
        dist: ``(K, K)`` squared-distance matrix.
        num_malicious: ``f``, the number of Byzantine clients tolerated.
        num_to_keep: How many clients to select.
        keys: One sortable key per client (e.g. node ids) that breaks equal
            scores, so the choice does not depend on arrival order; without
            keys (or for equal keys), the lower index wins.

    Raises:
        ValueError: If ``num_to_keep`` is not in ``1..K`` or ``keys`` has the wrong length.
    """
    scores = krum_scores(dist, num_malicious)
    n = scores.shape[0]
    if not 1 <= num_to_keep <= n:
        msg = f"num_to_keep must be in 1..{n}, got {num_to_keep}"
        raise ValueError(msg)
    if keys is None:
        order = [int(i) for i in np.argsort(scores, kind="stable")]
    elif len(keys) != n:
        msg = f"got {len(keys)} keys for {n} clients; pass one key per client"
        raise ValueError(msg)
    else:
        order = sorted(range(n), key=lambda i: (scores[i], keys[i], i))
    return order[:num_to_keep]
