"""The wire format: codec, safetensors framing, protocol envelopes, limits, strict JSON.

The header, control envelopes, limits and strict JSON load with the package
(standard library and orjson only: the ``fedzero`` command talks to a link with
them); the codec and what it needs (numpy, the data model) load on first use
(PEP 562).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_names
from ._header import PROTOCOL_VERSION, as_memoryview
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

if TYPE_CHECKING:  # imported on first use (lazy_names below)
    from .._dtypes import is_float_dtype
    from .._message import MAX_ID, new_message_id
    from ._codec import (
        Buffer,
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

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_names(
        __name__,
        {
            "Buffer": "._codec",
            "MAX_ID": ".._message",
            "decode": "._codec",
            "decode_content": "._codec",
            "decode_metadata": "._codec",
            "decode_metrics": "._codec",
            "decode_parsed": "._codec",
            "encode": "._codec",
            "encode_content": "._codec",
            "encode_header": "._codec",
            "frames_nbytes": "._codec",
            "is_float_dtype": ".._dtypes",
            "metadata_json": "._codec",
            "new_message_id": ".._message",
            "parse_payload": "._safetensors",
        },
    )
