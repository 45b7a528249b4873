"""The wire format: codec, safetensors framing, protocol envelopes, limits, strict JSON."""

from .._dtypes import is_float_dtype
from .._message import MAX_ID, new_message_id
from ._codec import (
    PROTOCOL_VERSION,
    Buffer,
    as_memoryview,
    decode,
    decode_content,
    decode_metadata,
    encode,
    encode_content,
    encode_header,
    frames_nbytes,
    metadata_json,
)
from ._json import loads_strict
from ._limits import DecodeLimits
from ._protocol import PEER_VERSION, control, parse_envelope
from ._safetensors import parse_payload

__all__ = [
    "MAX_ID",
    "PEER_VERSION",
    "PROTOCOL_VERSION",
    "Buffer",
    "DecodeLimits",
    "as_memoryview",
    "control",
    "decode",
    "decode_content",
    "decode_metadata",
    "encode",
    "encode_content",
    "encode_header",
    "frames_nbytes",
    "is_float_dtype",
    "loads_strict",
    "metadata_json",
    "new_message_id",
    "parse_envelope",
    "parse_payload",
]
