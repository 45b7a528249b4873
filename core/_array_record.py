"""ArrayRecord: an ordered mapping of names to NumPy arrays.

Arrays are stored as they are given whenever possible: C-contiguous,
little-endian arrays of a supported dtype are kept by reference (no copy), and
contiguous CPU torch tensors are converted with ``Tensor.numpy()``, which shares
their memory. Only non-contiguous, big-endian or non-CPU inputs are copied once,
on insertion, so that encoding never has to.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

from ._dtypes import BFLOAT16, safetensors_name
from ._mapping import ValidatingMapping

if TYPE_CHECKING:  # pragma: no cover
    import torch

NDArray: TypeAlias = npt.NDArray[Any]
"""Any NumPy array (the dtype is one of :data:`fedzero.core.SUPPORTED_DTYPES`)."""


def _torch_module() -> Any:
    """Return the torch module if the program already imported it, else None.

    fedzero never imports torch itself: if torch is not loaded, no value can be a
    torch tensor, so there is nothing to convert.
    """
    return sys.modules.get("torch")


def _tensor_to_numpy(tensor: Any, name: str) -> NDArray:
    torch = _torch_module()
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BFLOAT16)  # type: ignore[no-any-return]
    try:
        return t.numpy()  # type: ignore[no-any-return]
    except TypeError as exc:
        raise TypeError(f"array {name!r}: torch dtype {t.dtype} is not supported") from exc


def as_record_array(value: object, name: str) -> NDArray:
    """Normalize ``value`` into an array an ArrayRecord can hold.

    Returns the input itself when it already qualifies (no copy).

    Raises:
        TypeError: ``value`` is not an ndarray/tensor or has an unsupported dtype.
    """
    if isinstance(value, np.generic):  # e.g. a 0-d array plus a number
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        torch = _torch_module()
        if torch is not None and isinstance(value, torch.Tensor):
            value = _tensor_to_numpy(value, name)
        else:
            raise TypeError(
                f"array {name!r}: expected a numpy.ndarray or torch.Tensor, got "
                f"{type(value).__name__}; wrap lists and scalars in np.asarray(...)"
            )
    arr: NDArray = value
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    try:
        safetensors_name(arr.dtype)
    except TypeError as exc:
        raise TypeError(f"array {name!r}: {exc}") from None
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


class ArrayRecord(ValidatingMapping[NDArray]):
    """An ordered mapping of names to arrays: a model's parameters, an update.

    Build it from a mapping of names to arrays or torch tensors (a
    ``state_dict``), from a torch module, or from a list of arrays (named
    ``"0"``, ``"1"``, ...). Indexing returns the ``numpy.ndarray``.

    Arrays decoded from the wire are read-only views of the received buffers
    (zero copy); call ``.copy()`` on one before modifying it in place.

    Args:
        arrays: the initial contents (mapping, sequence, or torch module).

    Raises:
        TypeError: a value is not an array/tensor, has an unsupported dtype, or a
            name is not a ``str``.
    """

    __slots__ = ()
    _KEYS = "names"

    def __init__(
        self,
        arrays: Mapping[str, Any] | Sequence[Any] | torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        if arrays is None:
            return
        torch = _torch_module()
        if torch is not None and isinstance(arrays, torch.nn.Module):
            arrays = arrays.state_dict()
        if isinstance(arrays, Mapping):
            for key, value in arrays.items():
                self[key] = value
        elif isinstance(arrays, (list, tuple)):
            for i, value in enumerate(arrays):
                self[str(i)] = value
        else:
            raise TypeError(
                "ArrayRecord() takes a mapping of names to arrays, a list of arrays, "
                f"or a torch.nn.Module; got {type(arrays).__name__}"
            )

    @classmethod
    def from_numpy_ndarrays(cls, arrays: Iterable[NDArray]) -> ArrayRecord:
        """Build a record from a list of arrays, named ``"0"``, ``"1"``, ..."""
        return cls(list(arrays))

    @classmethod
    def from_torch_state_dict(cls, state_dict: Mapping[str, Any]) -> ArrayRecord:
        """Build a record from a torch ``state_dict`` without copying CPU tensors."""
        return cls(state_dict)

    def _validate(self, key: str, value: Any) -> NDArray:
        return as_record_array(value, key)

    def __eq__(self, other: object) -> bool:
        """Equal when names, order, dtypes, shapes and bytes are identical.

        Comparison is bitwise, so NaNs in the same positions compare equal.
        """
        if not isinstance(other, ArrayRecord):
            return NotImplemented
        if list(self._data) != list(other._data):
            return False
        return all(_bitwise_equal(a, other._data[k]) for k, a in self._data.items())

    def __repr__(self) -> str:
        items = ", ".join(f"{k!r}: {a.dtype}{list(a.shape)}" for k, a in self._data.items())
        return f"ArrayRecord({{{items}}})"

    @property
    def nbytes(self) -> int:
        """Total size of all arrays in bytes."""
        return sum(a.nbytes for a in self._data.values())

    def to_numpy_ndarrays(self) -> list[NDArray]:
        """Return the arrays in order (the same objects, not copies)."""
        return list(self._data.values())

    def to_torch_state_dict(self) -> dict[str, torch.Tensor]:
        """Return a torch ``state_dict`` whose tensors share memory with this record.

        Tensors made from read-only arrays (decoded from the wire) must not be
        modified in place; ``module.load_state_dict(...)`` copies and is safe.

        Raises:
            ModuleNotFoundError: torch is not installed.
        """
        import torch

        out: dict[str, torch.Tensor] = {}
        with warnings.catch_warnings():
            # from_numpy warns about read-only arrays; sharing is the point here.
            warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
            for key, arr in self._data.items():
                if arr.dtype == BFLOAT16:
                    out[key] = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
                else:
                    out[key] = torch.from_numpy(arr)
        return out


def _bitwise_equal(a: NDArray, b: NDArray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return np.array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8))
