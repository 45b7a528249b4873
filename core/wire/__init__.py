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
    decode_metrics,
    decode_parsed,
    encode,
    encode_content,
    encode_header,
    frames_nbytes,
    metadata_json,
)
from ._json import (
    check_scalar_values,
    dumps_strict,
    finite_json,
    from_json_float,
    loads_strict,
    to_json_float,
)
from ._limits import DecodeLimits
from ._protocol import (
    ENDPOINT_KINDS,
    KINDS,
    PEER_VERSION,
    RUN_SECRET_ENV,
    control,
    parse_envelope,
)
from ._safetensors import parse_payload

__all__ = [
    "ENDPOINT_KINDS",
    "KINDS",
    "MAX_ID",
    "PEER_VERSION",
    "PROTOCOL_VERSION",
    "RUN_SECRET_ENV",
    "Buffer",
    "DecodeLimits",
    "as_memoryview",
    "check_scalar_values",
    "control",
    "decode",
    "decode_content",
    "decode_metadata",
    "decode_metrics",
    "decode_parsed",
    "dumps_strict",
    "encode",
    "encode_content",
    "encode_header",
    "finite_json",
    "frames_nbytes",
    "from_json_float",
    "is_float_dtype",
    "loads_strict",
    "metadata_json",
    "new_message_id",
    "parse_envelope",
    "parse_payload",
    "to_json_float",
]
