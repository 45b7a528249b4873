"""ArrayRecord: an ordered mapping of names to NumPy arrays.

``ArrayRecord(model.state_dict())`` is a snapshot, as in Flower: writable
arrays and tensors are copied once on insertion, so a later optimizer step does
not change the record. Read-only arrays (those decoded from the wire) are kept
by reference, since nobody can change them; ``copy=False`` keeps everything by
reference (the zero-copy fast path for code that owns its arrays). Indexing
returns an :class:`~fedzero.core.Array` view (no copy); ``to_numpy_ndarrays()``
and ``to_torch_state_dict()`` return writable copies as Flower's do, or the
stored arrays with ``copy=False``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._array import Array, NDArray, as_record_array, torch_module
from ._dtypes import is_bfloat16
from ._mapping import ValidatingMapping

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ArrayRecord", "NDArray"]  # NDArray: the wire codec imports it from here

_FORMS = (
    "ArrayRecord() takes a mapping of names to arrays/tensors/Arrays (a state_dict), "
    "a list of arrays, or a torch.nn.Module"
)


class ArrayRecord(ValidatingMapping[NDArray]):
    """An ordered mapping of names to arrays: a model's parameters, an update.

    Build it from a mapping of names to arrays, torch tensors or
    :class:`~fedzero.core.Array` (a ``state_dict``), from a torch module, or from
    a list of arrays (named ``"0"``, ``"1"``, ...), positionally or with Flower's
    keywords ``array_dict=``, ``numpy_ndarrays=``, ``torch_state_dict=``.
    Indexing returns an :class:`~fedzero.core.Array` (a NumPy array view).

    The record is a snapshot (Flower's semantics): writable arrays and tensors
    are copied on insertion. Arrays decoded from the wire are read-only views of
    the received buffers and are never copied on insertion.

    Args:
        arrays: the initial contents (mapping, sequence, or torch module).
        copy: ``False`` keeps every array by reference (zero copy; the caller
            promises not to modify them while the record is in use).
        keep_input: ``False`` empties the input mapping or list afterwards, as
            Flower's flag does (to drop the caller's references early).
        array_dict: Flower's keyword for a mapping of names to Arrays.
        numpy_ndarrays: Flower's keyword for a list of arrays.
        torch_state_dict: Flower's keyword for a torch ``state_dict``.

    Raises:
        TypeError: a value is not an array/tensor, has an unsupported dtype, a
            name is not a ``str``, or more than one input is given.
    """

    __slots__ = ("_copy",)
    _KEYS = "names"

    def __init__(
        self,
        arrays: Mapping[str, Any] | Sequence[Any] | torch.nn.Module | None = None,
        *,
        copy: bool = True,
        keep_input: bool = True,
        array_dict: Mapping[str, Any] | None = None,
        numpy_ndarrays: Sequence[Any] | None = None,
        torch_state_dict: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._copy = bool(copy)
        given = [x for x in (arrays, array_dict, numpy_ndarrays, torch_state_dict) if x is not None]
        if len(given) > 1:
            raise TypeError(f"{_FORMS}; got more than one input")
        if not given:
            return
        source = given[0]
        torch = torch_module()
        if torch is not None and isinstance(source, torch.nn.Module):
            source = source.state_dict()
        if isinstance(source, Mapping):
            for key, value in source.items():
                self[key] = value
        elif isinstance(source, list | tuple):
            for i, value in enumerate(source):
                self[str(i)] = value
        else:
            raise TypeError(f"{_FORMS}; got {type(source).__name__}")
        if not keep_input and isinstance(source, MutableMapping | list):
            source.clear()

    @classmethod
    def from_numpy_ndarrays(
        cls, arrays: Iterable[NDArray], *, keep_input: bool = True, copy: bool = True
    ) -> ArrayRecord:
        """Build a record from a list of arrays, named ``"0"``, ``"1"``, ..."""
        source = arrays if isinstance(arrays, list) else list(arrays)
        return cls(source, keep_input=keep_input, copy=copy)

    @classmethod
    def from_torch_state_dict(
        cls, state_dict: Mapping[str, Any], *, keep_input: bool = True, copy: bool = True
    ) -> ArrayRecord:
        """Build a record from a torch ``state_dict`` (a snapshot unless ``copy=False``)."""
        return cls(state_dict, keep_input=keep_input, copy=copy)

    @classmethod
    def from_array_dict(
        cls, array_dict: Mapping[str, Any], *, keep_input: bool = True
    ) -> ArrayRecord:
        """Build a record from a mapping of names to :class:`~fedzero.core.Array`."""
        return cls(array_dict, keep_input=keep_input)

    def _validate(self, key: str, value: Any) -> NDArray:
        return as_record_array(value, key, copy=getattr(self, "_copy", True))

    def __getitem__(self, key: str) -> Array:
        return self._data[key].view(Array)

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

    def to_numpy_ndarrays(self, *, keep_input: bool = True, copy: bool = True) -> list[NDArray]:
        """Return the arrays in order, as writable copies (as Flower's method does).

        Args:
            keep_input: ``False`` removes the arrays from this record.
            copy: ``False`` returns the stored arrays themselves (zero copy;
                those decoded from the wire are read-only).
        """
        out = [a.copy() if copy else a for a in self._data.values()]
        if not keep_input:
            self._data.clear()
        return out

    def to_torch_state_dict(
        self, *, keep_input: bool = True, copy: bool = True
    ) -> dict[str, torch.Tensor]:
        """Return a torch ``state_dict`` of writable tensors (copies, as Flower's are).

        ``module.load_state_dict(...)`` copies again; pass ``copy=False`` there to
        get tensors that share memory with this record (zero copy; tensors made
        from read-only arrays must then not be modified in place).

        Args:
            keep_input: ``False`` removes the arrays from this record.
            copy: ``False`` shares memory with the record instead of copying.

        Raises:
            ModuleNotFoundError: torch is not installed.
        """
        import torch

        out: dict[str, torch.Tensor] = {}
        with warnings.catch_warnings():
            # from_numpy warns about read-only arrays; with copy=False sharing is the point.
            warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
            for key, stored in self._data.items():
                arr = stored.copy() if copy else stored
                if is_bfloat16(arr.dtype):
                    out[key] = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
                else:
                    out[key] = torch.from_numpy(arr)
        if not keep_input:
            self._data.clear()
        return out


def _bitwise_equal(a: NDArray, b: NDArray) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return np.array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8))
