"""Frame 0 before anything else: the protocol version, frames as bytes, the header parse.

Everything here is standard library (and orjson), so the ``fedzero`` command
and the control conversation (:mod:`._protocol`) use it without loading numpy
and the codec.
"""

from __future__ import annotations

from typing import Any, Final

from .._errors import DeserializationError
from ._json import loads_strict
from ._limits import DecodeLimits

PROTOCOL_VERSION: Final = 1
"""Version of the frame layout and header schema; bumped on incompatible change."""

KIND_MESSAGE: Final = "message"

_DEFAULT_LIMITS: Final = DecodeLimits()


def as_memoryview(frame: object, index: int) -> memoryview:
    """Return a flat byte memoryview of a received frame, without copying.

    Accepts bytes, bytearray, memoryview, uint8 ndarrays and ``zmq.Frame``.
    """
    buffer = getattr(frame, "buffer", frame)  # zmq.Frame exposes .buffer
    try:
        view = memoryview(buffer)  # type: ignore[arg-type]
    except TypeError:
        raise DeserializationError(
            f"frame {index}: {type(frame).__name__} is not a buffer"
        ) from None
    if view.format != "B" or view.ndim != 1:
        if not view.c_contiguous:
            raise DeserializationError(f"frame {index}: buffer is not contiguous")
        view = view.cast("B")
    return view


def decode_header(frame: memoryview, limits: DecodeLimits = _DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse and version-check frame 0; return the header object."""
    if len(frame) > limits.max_header_bytes:
        raise DeserializationError(
            f"frame 0: {len(frame)} bytes exceed the header cap of {limits.max_header_bytes}"
        )
    header = loads_strict(frame, what="frame 0")
    if not isinstance(header, dict):
        raise DeserializationError("frame 0: header must be a JSON object")
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise DeserializationError(
            f"frame 0: unsupported protocol version {version!r:.20} "
            f"(this side speaks {PROTOCOL_VERSION})"
        )
    if not isinstance(header.get("kind"), str):
        raise DeserializationError("frame 0: header.kind must be a string")
    return header
