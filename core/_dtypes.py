"""The tensor dtypes fedzero carries, and their safetensors names.

NumPy has no bfloat16; fedzero represents it with ``ml_dtypes.bfloat16``, a real
NumPy dtype (2 bytes, the upper half of a float32). Arrays of it convert
bit-exactly to and from ``torch.bfloat16`` tensors.

``ml_dtypes`` takes about a second to import, so it is imported only when a
bfloat16 array is met: :func:`bfloat16` (decoding a ``BF16`` tensor, or a torch
bfloat16 tensor going into a record) imports it, and everything else asks
:func:`is_bfloat16`, which needs no import: an array can only be bfloat16 if the
program already imported ``ml_dtypes`` to make it (as with torch tensors).
``BFLOAT16`` and ``SUPPORTED_DTYPES`` stay importable; naming them imports it.
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Any, Final

import numpy as np

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
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
"""Every safetensors dtype but ``BF16``, which needs ``ml_dtypes`` (see :func:`bfloat16`)."""

_NP_TO_ST: Final = {dtype: name for name, dtype in _ST_TO_NP.items()}

if TYPE_CHECKING:  # made on first use by the module's __getattr__
    BFLOAT16: np.dtype[Any]
    """The bfloat16 dtype (``ml_dtypes.bfloat16``)."""
    SUPPORTED_DTYPES: tuple[np.dtype[Any], ...]
    """Every dtype an ArrayRecord may hold (little-endian byte order)."""


@functools.cache
def bfloat16() -> np.dtype[Any]:
    """Return the bfloat16 NumPy dtype (``ml_dtypes.bfloat16``), importing ``ml_dtypes``."""
    import ml_dtypes

    dtype: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
    return dtype


def is_bfloat16(dtype: np.dtype[Any]) -> bool:
    """Whether ``dtype`` is bfloat16, without importing ``ml_dtypes`` if nothing did."""
    return "ml_dtypes" in sys.modules and bool(dtype == bfloat16())


@functools.cache
def supported_dtypes() -> tuple[np.dtype[Any], ...]:
    """Every dtype an ArrayRecord may hold (little-endian), bfloat16 included."""
    dtypes = list(_ST_TO_NP.values())
    at = dtypes.index(np.dtype("<f2")) + 1  # the order of safetensors' names: F16, BF16, F32
    return (*dtypes[:at], bfloat16(), *dtypes[at:])


def safetensors_name(dtype: np.dtype[np.generic]) -> str:
    """Return the safetensors dtype string (``"F32"``, ``"BF16"``, ...) of ``dtype``.

    Raises:
        TypeError: ``dtype`` is not supported by fedzero.
    """
    name = _NP_TO_ST.get(dtype)
    if name is not None:
        return name
    if is_bfloat16(dtype):
        return "BF16"
    raise TypeError(
        f"dtype {dtype} is not supported; use one of bool, (u)int8/16/32/64, "
        "float16, bfloat16 (ml_dtypes.bfloat16), float32, float64"
    )


def is_float_dtype(dtype: np.dtype[np.generic]) -> bool:
    """Whether ``dtype`` is a floating-point type (float16/32/64 or bfloat16)."""
    return dtype.kind == "f" or is_bfloat16(dtype)


def numpy_dtype(name: str) -> np.dtype[np.generic] | None:
    """Return the NumPy dtype for a safetensors dtype string, or None if unknown.

    ``"BF16"`` imports ``ml_dtypes`` (the first time a bfloat16 tensor arrives).
    """
    dtype = _ST_TO_NP.get(name)
    if dtype is None and name == "BF16":
        return bfloat16()
    return dtype


if not TYPE_CHECKING:  # type checkers read the annotations above

    def __getattr__(name: str) -> Any:
        """``BFLOAT16`` and ``SUPPORTED_DTYPES``, made (importing ``ml_dtypes``) when named."""
        if name == "BFLOAT16":
            return bfloat16()
        if name == "SUPPORTED_DTYPES":
            return supported_dtypes()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
