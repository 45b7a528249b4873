"""One safetensors payload, split into frames at tensor boundaries.

Frame layout (see PROTOCOL.md): the first frame is the 8-byte little-endian
header length N followed by N bytes of JSON header (padded with spaces to a
multiple of 8, as the safetensors library does); then one frame per tensor, in
the order of their data offsets. Joined, the frames are a byte-exact
``.safetensors`` file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import orjson

from .._array_record import NDArray
from .._dtypes import numpy_dtype, safetensors_name
from .._errors import DeserializationError
from ._json import loads_strict
from ._limits import DecodeLimits

_LEN: Final = 8
_METADATA_KEY: Final = "__metadata__"
_ENTRY_KEYS: Final = frozenset({"dtype", "shape", "data_offsets"})


def tensor_frame(arr: NDArray) -> NDArray:
    """Return a flat uint8 view of ``arr``'s bytes (no copy; ``arr`` is C-contiguous)."""
    return arr.reshape(-1).view(np.uint8)


def build_payload(
    tensors: Sequence[tuple[str, NDArray]], metadata: dict[str, str] | None = None
) -> list[Any]:
    """Return the payload frames for ``tensors`` (key, C-contiguous array) in order.

    No tensor bytes are copied: every tensor frame is a view of its array.
    """
    header: dict[str, Any] = {}
    if metadata:
        header[_METADATA_KEY] = metadata
    offset = 0
    for key, arr in tensors:
        end = offset + arr.nbytes
        header[key] = {
            "dtype": safetensors_name(arr.dtype),
            "shape": list(arr.shape),
            "data_offsets": [offset, end],
        }
        offset = end
    raw = orjson.dumps(header)  # compact UTF-8, as json.dumps(separators=(",", ":")) would
    raw += b" " * (-len(raw) % 8)
    first = len(raw).to_bytes(_LEN, "little") + raw
    return [first, *(tensor_frame(arr) for _, arr in tensors)]


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeserializationError(f"{what}: expected an integer, got {value!r:.40}")
    return value


def _entry(
    key: str, raw: object, limits: DecodeLimits
) -> tuple[np.dtype[Any], tuple[int, ...], int, int]:
    what = f"tensor {key!r:.80}"
    if not isinstance(raw, dict) or set(raw) != _ENTRY_KEYS:
        raise DeserializationError(f"{what}: entry must have exactly dtype, shape, data_offsets")
    dtype = numpy_dtype(raw["dtype"]) if isinstance(raw["dtype"], str) else None
    if dtype is None:
        raise DeserializationError(f"{what}: unknown dtype {raw['dtype']!r:.40}")
    shape_raw = raw["shape"]
    if not isinstance(shape_raw, list) or len(shape_raw) > limits.max_ndim:
        raise DeserializationError(
            f"{what}: shape must be a list of at most {limits.max_ndim} ints"
        )
    shape = tuple(_int(d, f"{what} shape") for d in shape_raw)
    if any(d < 0 for d in shape):
        raise DeserializationError(f"{what}: negative dimension in shape {list(shape)}")
    offsets = raw["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2:
        raise DeserializationError(f"{what}: data_offsets must be [begin, end]")
    begin, end = (_int(o, f"{what} data_offsets") for o in offsets)
    if not 0 <= begin <= end:
        raise DeserializationError(
            f"{what}: data_offsets [{begin}, {end}] are not 0 <= begin <= end"
        )
    if math.prod(shape) * dtype.itemsize != end - begin:
        raise DeserializationError(
            f"{what}: shape {list(shape)} x {dtype.itemsize} bytes != {end - begin} bytes of data"
        )
    return dtype, shape, begin, end


def parse_payload(frames: Sequence[memoryview], limits: DecodeLimits) -> dict[str, NDArray]:
    """Return the tensors of a split safetensors payload, as views of ``frames``.

    Args:
        frames: the payload frames (header frame, then one frame per tensor).
        limits: caps on header size, tensor count and rank.

    Raises:
        DeserializationError: anything about the payload is inconsistent.
    """
    first = frames[0]
    if len(first) < _LEN:
        raise DeserializationError(f"frame 1: {len(first)} bytes, need at least {_LEN}")
    size = int.from_bytes(first[:_LEN], "little")
    if size > limits.max_tensor_header_bytes:
        raise DeserializationError(
            f"frame 1: safetensors header of {size} bytes exceeds the cap of "
            f"{limits.max_tensor_header_bytes}"
        )
    if _LEN + size != len(first):
        raise DeserializationError(
            f"frame 1: header length {size} does not match the frame's {len(first) - _LEN} bytes"
        )
    header = loads_strict(first[_LEN:], what="frame 1 (safetensors header)")
    if not isinstance(header, dict):
        raise DeserializationError("frame 1: safetensors header must be a JSON object")
    metadata = header.pop(_METADATA_KEY, None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise DeserializationError("frame 1: __metadata__ must map strings to strings")
    if len(header) > limits.max_tensors:
        raise DeserializationError(
            f"frame 1: {len(header)} tensors exceed the cap of {limits.max_tensors}"
        )
    entries = sorted(
        ((key, *_entry(key, raw, limits)) for key, raw in header.items()),
        key=lambda e: (e[3], e[4]),
    )
    if len(entries) != len(frames) - 1:
        raise DeserializationError(
            f"payload: header lists {len(entries)} tensors "
            f"but {len(frames) - 1} tensor frames follow"
        )
    out: dict[str, NDArray] = {}
    expected_begin = 0
    for i, (key, dtype, shape, begin, end) in enumerate(entries):
        if begin != expected_begin:
            gap = "overlaps the previous one" if begin < expected_begin else "leaves a hole"
            raise DeserializationError(
                f"tensor {key!r:.80}: data at {begin} {gap} (expected {expected_begin})"
            )
        frame = frames[i + 1]
        if len(frame) != end - begin:
            raise DeserializationError(
                f"frame {i + 2}: {len(frame)} bytes, tensor {key!r:.80} needs {end - begin}"
            )
        if dtype == np.bool_ and len(frame) and np.frombuffer(frame, np.uint8).max() > 1:
            raise DeserializationError(f"tensor {key!r:.80}: BOOL bytes must be 0 or 1")
        arr = np.frombuffer(frame, dtype=dtype).reshape(shape)
        if not arr.flags.aligned:  # only from foreign writers; ours are aligned
            arr = arr.copy()
        # Read-only, always: over inproc:// the buffer may be the sender's array.
        arr.flags.writeable = False
        out[key] = arr
        expected_begin = end
    return out
