"""Bounds applied to everything decoded from the wire."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Caps that bound what a decoder accepts from an untrusted peer.

    Attributes:
        max_header_bytes: largest frame 0 (the JSON message header).
        max_tensor_header_bytes: largest safetensors JSON header (frame 1).
        max_tensors: most tensors in one message.
        max_ndim: highest tensor rank.
        max_records: most records in one RecordDict.
    """

    max_header_bytes: int = 16 * 2**20
    max_tensor_header_bytes: int = 16 * 2**20
    max_tensors: int = 100_000
    max_ndim: int = 32
    max_records: int = 10_000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"DecodeLimits.{field.name} must be a positive int, got {value!r}")
