"""Obvious NumPy reference implementations of the aggregation kernels."""

from __future__ import annotations

from typing import Any

import numpy as np


def widen(x: np.ndarray, acc_dtype: Any) -> np.ndarray:
    """Half precision to float32 (exact), then to the accumulator dtype."""
    with np.errstate(over="ignore"):
        if x.dtype == np.float64:
            return x.astype(acc_dtype)
        return x.astype(np.float32).astype(acc_dtype)


def fold(acc: np.ndarray, x: np.ndarray, w: float) -> np.ndarray:
    """acc + w * x, every operation in acc's dtype."""
    with np.errstate(all="ignore"):
        return acc + acc.dtype.type(w) * widen(x, acc.dtype)


def trimmed_mean(stack: np.ndarray, beta: float, acc_dtype: Any) -> np.ndarray:
    """Sort and slice (scipy.stats.trim_mean semantics), values rounded to acc_dtype first."""
    k = stack.shape[0]
    cut = int(beta * k)
    s = np.sort(widen(stack, acc_dtype).astype(np.float64), axis=0)
    return s[cut : k - cut].mean(axis=0)


def median(stack: np.ndarray, acc_dtype: Any) -> np.ndarray:
    """np.median over clients, in float64, rounded once to acc_dtype."""
    wide = widen(stack, acc_dtype).astype(np.float64)
    return np.median(wide, axis=0).astype(acc_dtype)


def sq_distances(stack: np.ndarray) -> np.ndarray:
    flat = widen(stack.reshape(stack.shape[0], -1), np.float64)
    diff = flat[:, None, :] - flat[None, :, :]
    return (diff * diff).sum(axis=-1)


def krum_scores(dist: np.ndarray, f: int) -> np.ndarray:
    """Flower's aggregate_krum scoring."""
    n = dist.shape[0]
    closest = max(1, n - f - 2)
    return np.array([np.sort(np.delete(dist[i], i))[:closest].sum() for i in range(n)])


def fedopt(kind: str, x, agg, m, v, *, eta, b1, b2, tau):  # type: ignore[no-untyped-def]
    """Flower's FedAdam/FedYogi/FedAdagrad update (eta already bias-corrected for Adam)."""
    delta = agg - x
    m = b1 * m + (1 - b1) * delta
    if kind == "adam":
        v = b2 * v + (1 - b2) * delta**2
    elif kind == "yogi":
        v = v - (1.0 - b2) * (delta**2) * np.sign(v - delta**2)
    else:
        v = v + delta**2
    return x + eta * m / (np.sqrt(v) + tau), m, v
