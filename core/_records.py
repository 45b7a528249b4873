"""MetricRecord, ConfigRecord and RecordDict.

Values are validated on insertion, so a record that exists is always one the
wire codec can encode. NumPy scalars (``np.float32(0.5)``, ``np.int64(3)``) are
accepted and stored as Python numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias, cast

import numpy as np

from ._array_record import ArrayRecord
from ._mapping import ValidatingMapping

MetricValue: TypeAlias = int | float | list[int] | list[float]
ConfigScalar: TypeAlias = int | float | bool | str | bytes
ConfigValue: TypeAlias = (
    int
    | float
    | bool
    | str
    | bytes
    | list[int]
    | list[float]
    | list[bool]
    | list[str]
    | list[bytes]
)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # the int range MetricRecord/ConfigRecord values take


def _number(value: object, where: str) -> int | float:
    """Return ``value`` as a Python int or float, or raise TypeError."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{where}: bool is not a metric; store flags in a ConfigRecord")
    if isinstance(value, int | np.integer):
        as_int = int(value)
        if not _INT64_MIN <= as_int <= _INT64_MAX:
            raise ValueError(f"{where}: integer {as_int} does not fit in 64 bits")
        return as_int
    if isinstance(value, float | np.floating):
        return float(value)
    raise TypeError(f"{where}: expected int or float, got {type(value).__name__}")


def _config_scalar(value: object, where: str) -> ConfigScalar:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str | bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    try:
        return _number(value, where)
    except TypeError:
        raise TypeError(
            f"{where}: expected int, float, bool, str or bytes, got {type(value).__name__}"
        ) from None


def _homogeneous(items: list[Any], where: str) -> None:
    kinds = {bool if isinstance(v, bool) else type(v) for v in items}
    if len(kinds) > 1:
        names = sorted(k.__name__ for k in kinds)
        raise TypeError(f"{where}: list elements must all have one type, got {names}")


class _TypedRecord(ValidatingMapping[Any]):
    """A str-keyed dict that validates each value on insertion."""

    __slots__ = ()

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if items is not None:
            if not isinstance(items, Mapping):
                raise TypeError(
                    f"{type(self).__name__}() takes a mapping, got {type(items).__name__}"
                )
            for key, value in items.items():
                self[key] = value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _TypedRecord):
            return type(self) is type(other) and self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented


class MetricRecord(_TypedRecord):
    """Named numbers: ``str -> int | float | list[int] | list[float]``.

    Raises:
        TypeError: a value is not a number (or a list of numbers of one type).
        ValueError: an integer does not fit in 64 bits.
    """

    __slots__ = ()

    def _validate(self, key: str, value: object) -> MetricValue:
        where = f"MetricRecord[{key!r}]"
        if isinstance(value, list | tuple | np.ndarray):
            items = [_number(v, where) for v in value]
            _homogeneous(items, where)
            return items
        return _number(value, where)


class ConfigRecord(_TypedRecord):
    """Named settings: ``str -> int | float | bool | str | bytes`` or lists of one type.

    Raises:
        TypeError: a value has another type, or a list mixes types.
        ValueError: an integer does not fit in 64 bits.
    """

    __slots__ = ()

    def _validate(self, key: str, value: object) -> ConfigValue:
        where = f"ConfigRecord[{key!r}]"
        if isinstance(value, list | tuple):
            items = [_config_scalar(v, where) for v in value]
            _homogeneous(items, where)
            return cast(ConfigValue, items)
        return _config_scalar(value, where)


Record: TypeAlias = ArrayRecord | MetricRecord | ConfigRecord


class RecordDict(ValidatingMapping[Record]):
    """Named records: the content of a :class:`fedzero.core.Message`.

    Args:
        records: initial records; each value must be an ArrayRecord, MetricRecord
            or ConfigRecord.
    """

    __slots__ = ()

    def __init__(self, records: Mapping[str, Record] | None = None) -> None:
        super().__init__()
        if records is not None:
            for key, value in records.items():
                self[key] = value

    def _validate(self, key: str, value: object) -> Record:
        if not isinstance(value, ArrayRecord | MetricRecord | ConfigRecord):
            raise TypeError(
                f"RecordDict[{key!r}]: expected ArrayRecord, MetricRecord or ConfigRecord, "
                f"got {type(value).__name__}"
            )
        return value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordDict):
            return NotImplemented
        return list(self._data) == list(other._data) and all(
            v == other._data[k] for k, v in self._data.items()
        )

    @property
    def array_records(self) -> dict[str, ArrayRecord]:
        """The ArrayRecords, by key, in order."""
        return {k: v for k, v in self._data.items() if isinstance(v, ArrayRecord)}

    @property
    def metric_records(self) -> dict[str, MetricRecord]:
        """The MetricRecords, by key, in order."""
        return {k: v for k, v in self._data.items() if isinstance(v, MetricRecord)}

    @property
    def config_records(self) -> dict[str, ConfigRecord]:
        """The ConfigRecords, by key, in order."""
        return {k: v for k, v in self._data.items() if isinstance(v, ConfigRecord)}
