"""Hypothesis strategies: stacks of K client arrays of every supported dtype."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

INPUT_DTYPES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.float32, np.float64]
ACC_DTYPES = [np.float32, np.float64]


@st.composite
def stacks(
    draw: st.DrawFn,
    *,
    finite: bool = True,
    min_k: int = 1,
    max_k: int = 6,
    max_p: int = 33,
    max_abs: float | None = None,
    dtype: Any = None,
) -> np.ndarray:
    """A (K, P) stack: extremes, subnormals, signed zeros and (often) ties."""
    dtype = np.dtype(draw(st.sampled_from(INPUT_DTYPES)) if dtype is None else dtype)
    k = draw(st.integers(min_k, max_k))
    p = draw(st.integers(0, max_p))
    wide = np.float64 if dtype == np.float64 else np.float32
    bound = None if max_abs is None else float(wide(max_abs))
    pool = st.floats(
        width=64 if dtype == np.float64 else 32,
        allow_nan=not finite,
        allow_infinity=not finite,
        allow_subnormal=True,
        min_value=None if bound is None else -bound,
        max_value=bound,
    )
    if draw(st.booleans()):  # ties: few distinct values
        pool = st.sampled_from(draw(st.lists(pool, min_size=1, max_size=3)))
    with np.errstate(over="ignore"):  # float32 -> float16 overflows to inf on purpose
        stack = draw(arrays(wide, (k, p), elements=pool)).astype(dtype)
    if finite:  # casting to half precision can overflow to inf
        stack[~np.isfinite(stack.astype(np.float64))] = 0
    return stack
