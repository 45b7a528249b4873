"""The one str-keyed, validating mapping that every record type is built on."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, TypeVar

V = TypeVar("V")


class ValidatingMapping(MutableMapping[str, V]):
    """A ``dict[str, V]`` in insertion order whose values are checked on insertion.

    Subclasses implement :meth:`_validate` (return the value to store, or raise
    ``TypeError``/``ValueError`` naming ``key``) and may override ``__eq__``.
    """

    __slots__ = ("_data",)
    _KEYS = "keys"  # what the error message calls the keys ("names" for arrays)

    def __init__(self) -> None:
        self._data: dict[str, V] = {}

    def _validate(self, key: str, value: Any) -> V:
        raise NotImplementedError

    def __getitem__(self, key: str) -> V:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            kind = type(self).__name__
            raise TypeError(f"{kind} {self._KEYS} must be str, got {type(key).__name__}")
        self._data[key] = self._validate(key, value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"
