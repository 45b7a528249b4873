"""Array: one array of an ArrayRecord, a NumPy array with Flower's ``Array`` API.

``record["w"]`` is an :class:`Array`: a NumPy array (a view, no copy) that also
answers what Flower code calls on its ``Array``: ``.numpy()`` (a writable copy),
``.stype``, ``Array.from_numpy_ndarray(...)``, ``Array(ndarray)``,
``Array(torch_tensor)`` and ``Array(dtype, shape, stype, data)`` with ``.npy``
bytes as Flower serializes them.
"""

from __future__ import annotations

import io
import sys
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from ._dtypes import bfloat16, safetensors_name

NDArray: TypeAlias = npt.NDArray[Any]
"""Any NumPy array (the dtype is one of :data:`fedzero.core.SUPPORTED_DTYPES`)."""

NDArrays: TypeAlias = list[NDArray]
"""A list of arrays (Flower's ``NDArrays``)."""

NUMPY_STYPE = "numpy.ndarray"
"""Flower's serialization type of NumPy arrays (the only one fedzero holds)."""


def torch_module() -> Any:
    """Return the torch module if the program already imported it, else None.

    fedzero never imports torch itself: if torch is not loaded, no value can be a
    torch tensor, so there is nothing to convert.
    """
    return sys.modules.get("torch")


def _tensor_to_numpy(tensor: Any, name: str) -> NDArray:
    """The tensor's memory as an array (shared for contiguous CPU tensors)."""
    torch = torch_module()
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(bfloat16())  # type: ignore[no-any-return]
    try:
        return t.numpy()  # type: ignore[no-any-return]
    except TypeError as exc:
        raise TypeError(f"array {name!r}: torch dtype {t.dtype} is not supported") from exc


def as_record_array(value: object, name: str, *, copy: bool) -> NDArray:
    """Normalize ``value`` into a plain C-contiguous little-endian array a record can hold.

    With ``copy=False`` the input itself is returned when it already qualifies.
    With ``copy=True`` the result never shares memory that anyone can still write:
    a writable array or any tensor is copied once; a read-only array (one decoded
    from the wire) is kept, since nobody can change it.

    Raises:
        TypeError: ``value`` is not an ndarray/tensor or has an unsupported dtype.
    """
    if isinstance(value, np.generic):  # e.g. a 0-d array plus a number
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        torch = torch_module()
        if torch is None or not isinstance(value, torch.Tensor):
            raise TypeError(
                f"array {name!r}: expected a numpy.ndarray or torch.Tensor, got "
                f"{type(value).__name__}; wrap lists and scalars in np.asarray(...)"
            )
        value = _tensor_to_numpy(value, name)
    arr: NDArray = value if type(value) is np.ndarray else value.view(np.ndarray)
    shared = arr.flags.writeable  # someone may still write it (a tensor's numpy() is writable)
    if arr.dtype.byteorder == ">":
        arr, shared = arr.astype(arr.dtype.newbyteorder("<")), False
    try:
        safetensors_name(arr.dtype)
    except TypeError as exc:
        raise TypeError(f"array {name!r}: {exc}") from None
    if not arr.flags.c_contiguous:
        arr, shared = np.ascontiguousarray(arr), False
    if copy and shared:
        arr = arr.copy()
    return arr


_FORMS = (
    "use Array(ndarray), Array(torch_tensor) or "
    "Array(dtype, shape, stype='numpy.ndarray', data=<.npy bytes>)"
)


class Array(np.ndarray):
    """A NumPy array with Flower's ``Array`` methods.

    It is a ``numpy.ndarray`` in every respect (``dtype`` is a ``numpy.dtype``,
    which compares equal to Flower's dtype strings such as ``"float32"``).
    Arrays decoded from the wire are read-only views of the received buffers;
    ``.numpy()`` returns a writable copy, as Flower's does.

    Raises:
        TypeError: arguments that match none of Flower's forms.
        ValueError: ``data`` does not hold an array of ``dtype`` and ``shape``.
    """

    def __new__(
        cls,
        *args: Any,
        dtype: str | None = None,
        shape: tuple[int, ...] | list[int] | None = None,
        stype: str | None = None,
        data: bytes | None = None,
        ndarray: Any = None,
        torch_tensor: Any = None,
    ) -> Array:
        """Build an Array from an ndarray, a torch tensor, or Flower's four fields."""
        if len(args) > 4:
            raise TypeError(f"Array() takes at most 4 positional arguments; {_FORMS}")
        source = ndarray if ndarray is not None else torch_tensor
        if source is None and len(args) == 1:
            source = args[0]
        if source is not None:
            return as_record_array(source, "Array", copy=True).view(cls)
        fields: list[Any] = [*args, None, None, None, None][:4]
        for i, kw in enumerate((dtype, shape, stype, data)):
            if kw is not None:
                fields[i] = kw
        dtype, shape, stype, data = fields
        if not (isinstance(dtype, str) and shape is not None and isinstance(data, bytes)):
            raise TypeError(f"Array(): {_FORMS}")
        if stype != NUMPY_STYPE:
            raise TypeError(f"Array(): stype {stype!r} is not supported; {_FORMS}")
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        if str(arr.dtype) != dtype or tuple(arr.shape) != tuple(shape):
            raise ValueError(
                f"Array(): data holds {arr.dtype}{list(arr.shape)}, not {dtype}{list(shape)}"
            )
        return np.ascontiguousarray(arr).view(cls)

    @property
    def stype(self) -> str:
        """Flower's serialization type: always ``"numpy.ndarray"``."""
        return NUMPY_STYPE

    def numpy(self) -> NDArray:
        """Return a writable copy as a plain ``numpy.ndarray`` (as Flower's ``numpy()``)."""
        return np.array(self, copy=True, subok=False)

    def tobytes_npy(self) -> bytes:
        """Return the array as ``.npy`` bytes (the ``data`` of Flower's ``Array``)."""
        buffer = io.BytesIO()
        np.save(buffer, self.view(np.ndarray), allow_pickle=False)
        return buffer.getvalue()

    @classmethod
    def from_numpy_ndarray(cls, ndarray: Any) -> Array:
        """Return an Array holding a copy of ``ndarray`` (Flower's classmethod)."""
        return cls(ndarray)

    @classmethod
    def from_torch_tensor(cls, tensor: Any) -> Array:
        """Return an Array holding a copy of ``tensor`` (detached, on the CPU)."""
        if "torch" not in sys.modules:
            raise TypeError("Array.from_torch_tensor needs torch (import torch first)")
        return cls(tensor)
