"""Which dtypes aggregation reads and which it computes in (NumPy only, no Numba).

Shared by the kernels (``fedzero.aggregation.kernels``) and the server
optimizers, which run in the ServerApp process without the JIT.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

__all__ = ["ACCUMULATOR_DTYPES", "BFLOAT16", "INPUT_DTYPES", "default_accumulator_dtype"]

BFLOAT16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)

INPUT_DTYPES: tuple[np.dtype[Any], ...] = (
    np.dtype(np.float16),
    BFLOAT16,
    np.dtype(np.float32),
    np.dtype(np.float64),
)
"""Client array dtypes the kernels read (half precision is widened on the fly)."""

ACCUMULATOR_DTYPES: tuple[np.dtype[Any], ...] = (np.dtype(np.float32), np.dtype(np.float64))
"""Accumulator dtypes: sums are never kept in half precision."""


def default_accumulator_dtype(dtype: Any) -> np.dtype[Any]:
    """float64 for float64 inputs, float32 for everything narrower."""
    wide: np.dtype[Any] = np.dtype(np.float64 if np.dtype(dtype) == np.float64 else np.float32)
    return wide
