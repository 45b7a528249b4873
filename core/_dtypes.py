"""The tensor dtypes fedzero carries, and their safetensors names.

NumPy has no bfloat16; fedzero represents it with ``ml_dtypes.bfloat16``, a real
NumPy dtype (2 bytes, the upper half of a float32). Arrays of it convert
bit-exactly to and from ``torch.bfloat16`` tensors.
"""

from __future__ import annotations

from typing import Final

import ml_dtypes
import numpy as np

BFLOAT16: Final = np.dtype(ml_dtypes.bfloat16)

_ST_TO_NP: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("<u1"),
    "I8": np.dtype("<i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "BF16": BFLOAT16,
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}

_NP_TO_ST: Final = {dtype: name for name, dtype in _ST_TO_NP.items()}

SUPPORTED_DTYPES: Final = tuple(_ST_TO_NP.values())
"""Every dtype an ArrayRecord may hold (little-endian byte order)."""


def safetensors_name(dtype: np.dtype[np.generic]) -> str:
    """Return the safetensors dtype string (``"F32"``, ``"BF16"``, ...) of ``dtype``.

    Raises:
        TypeError: ``dtype`` is not supported by fedzero.
    """
    name = _NP_TO_ST.get(dtype)
    if name is not None:
        return name
    raise TypeError(
        f"dtype {dtype} is not supported; use one of bool, (u)int8/16/32/64, "
        "float16, bfloat16 (ml_dtypes.bfloat16), float32, float64"
    )


def is_float_dtype(dtype: np.dtype[np.generic]) -> bool:
    """Whether ``dtype`` is a floating-point type (float16/32/64 or bfloat16)."""
    return dtype.kind == "f" or dtype == BFLOAT16


def numpy_dtype(name: str) -> np.dtype[np.generic] | None:
    """Return the NumPy dtype for a safetensors dtype string, or None if unknown."""
    return _ST_TO_NP.get(name)
