"""The wire codec: Message <-> list of frames. The one place serialization lives.

Frame 0 is a UTF-8 JSON header; if the message holds arrays, frames 1.. are one
safetensors payload split at tensor boundaries (see :mod:`._safetensors` and
PROTOCOL.md). Encoding copies no tensor bytes; decoding returns arrays that are
views of the received frames.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any, Final, TypeAlias, cast

import numpy as np
import numpy.typing as npt

from .._array_record import ArrayRecord, NDArray
from .._errors import DeserializationError
from .._message import MAX_ID, Error, Message, Metadata, validate_message_type
from .._records import ConfigRecord, MetricRecord, RecordDict
from ._header import KIND_MESSAGE, PROTOCOL_VERSION, as_memoryview, decode_header
from ._json import dumps_strict, finite_json, from_json_float, to_json_float
from ._limits import DecodeLimits
from ._safetensors import build_payload, parse_payload

Buffer: TypeAlias = bytes | bytearray | memoryview | npt.NDArray[np.uint8]
"""A frame as the codec produces it: send each with ``copy=False``."""

_DEFAULT_LIMITS: Final = DecodeLimits()
_METADATA_FIELDS: Final = {
    "run_id": int,
    "message_id": str,
    "src_node_id": int,
    "dst_node_id": int,
    "reply_to_message_id": str,
    "group_id": str,
    "message_type": str,
    "ttl": float,
    "created_at": float,
}
_MAX_ID_LEN: Final = 128


# --------------------------------------------------------------------- encode


def metadata_json(meta: Metadata) -> dict[str, Any]:
    """The header's ``metadata`` object for ``meta``."""
    return {name: getattr(meta, name) for name in _METADATA_FIELDS}


def _config_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float):
        return to_json_float(value)
    if isinstance(value, list):
        return [_config_json(v) for v in value]
    return value


def _tensor_keys(content: RecordDict) -> list[tuple[str, list[tuple[str, str, NDArray]]]]:
    """Assign each array a unique safetensors key: its own name where possible."""
    used: set[str] = {"__metadata__"}
    out: list[tuple[str, list[tuple[str, str, NDArray]]]] = []
    for rkey, record in content.array_records.items():
        entries: list[tuple[str, str, NDArray]] = []
        for name, arr in record.items():
            key = name if name not in used else f"{rkey}/{name}"
            n = 1
            while key in used:
                key, n = f"{rkey}/{name}#{n}", n + 1
            used.add(key)
            entries.append((name, key, arr))
        out.append((rkey, entries))
    return out


def encode_content(content: RecordDict) -> tuple[list[dict[str, Any]], list[Buffer]]:
    """Return (the header's ``content`` list, the payload frames) for ``content``.

    The payload frames can be sent many times, e.g. once per destination node,
    while only frame 0 is rebuilt for each (see :func:`encode_header`).
    """
    keyed = dict(_tensor_keys(content))
    records: list[dict[str, Any]] = []
    tensors: list[tuple[str, NDArray]] = []
    for rkey, record in content.items():
        if isinstance(record, ArrayRecord):
            entries = keyed[rkey]
            records.append(
                {"key": rkey, "type": "array", "tensors": [[n, k] for n, k, _ in entries]}
            )
            tensors.extend((k, arr) for _, k, arr in entries)
        elif isinstance(record, MetricRecord):
            records.append({"key": rkey, "type": "metric", "items": finite_json(dict(record))})
        else:
            items = {k: _config_json(v) for k, v in record.items()}
            records.append({"key": rkey, "type": "config", "items": items})
    return records, (build_payload(tensors) if tensors else [])


def encode_header(
    metadata: Metadata,
    content: list[dict[str, Any]] | None = None,
    error: Error | None = None,
) -> bytes:
    """Return frame 0 for a message with the given metadata and content or error."""
    header: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "kind": KIND_MESSAGE,
        "metadata": metadata_json(metadata),
    }
    if error is not None:
        header["error"] = {"code": int(error.code), "reason": error.reason}
    else:
        header["content"] = content if content is not None else []
    return dumps_strict(header)


def encode(message: Message) -> list[Buffer]:
    """Serialize ``message`` into frames, copying no tensor data.

    Returns:
        ``[header, *payload]``: send them as one multipart message with
        ``copy=False``. Tensor frames are views of the record's arrays, so those
        arrays must not be modified until the send completes.
    """
    if message.has_error():
        return [encode_header(message.metadata, error=message.error)]
    records, payload = encode_content(message.content)
    return [encode_header(message.metadata, records), *payload]


def frames_nbytes(frames: Sequence[Buffer]) -> int:
    """Total bytes of ``frames`` as :func:`encode` produces them (1-D byte buffers)."""
    return sum(len(f) for f in frames)


# --------------------------------------------------------------------- decode


def _check_field(meta: dict[str, Any], name: str, kind: type) -> Any:
    value: Any = meta.get(name)
    where = f"frame 0: metadata.{name}"
    if isinstance(value, bool) or not isinstance(value, int | float if kind is float else kind):
        raise DeserializationError(f"{where} must be {kind.__name__}, got {value!r:.40}")
    if isinstance(value, str):
        if len(value) > _MAX_ID_LEN:
            raise DeserializationError(f"{where} longer than {_MAX_ID_LEN} characters")
    elif kind is float:
        value = float(cast(float, value))
        if not math.isfinite(value):
            raise DeserializationError(f"{where} must be finite")
    elif not 0 <= cast(int, value) <= MAX_ID:
        raise DeserializationError(f"{where} {value} outside [0, 2**63-1]")
    return value


def decode_metadata(raw: object) -> Metadata:
    """Validate the ``metadata`` object of a header and build :class:`Metadata`."""
    if not isinstance(raw, dict):
        raise DeserializationError("frame 0: metadata must be an object")
    unknown = set(raw) - set(_METADATA_FIELDS)
    if unknown:
        raise DeserializationError(f"frame 0: unknown metadata fields {sorted(unknown)[:5]}")
    values = {name: _check_field(raw, name, kind) for name, kind in _METADATA_FIELDS.items()}
    try:
        validate_message_type(values["message_type"])
    except ValueError as exc:
        raise DeserializationError(f"frame 0: {exc}") from None
    if values["ttl"] < 0:
        raise DeserializationError("frame 0: metadata.ttl must not be negative")
    return Metadata(**values)


def _metric_value(value: Any) -> Any:
    if isinstance(value, list):
        return [from_json_float(v) for v in value]
    return from_json_float(value)


def decode_metrics(raw: object, where: str) -> MetricRecord:
    """The MetricRecord an ``items`` object describes (non-finite floats as ``{"f": ...}``).

    Raises:
        DeserializationError: not an object of numbers or lists of numbers.
    """
    try:
        items = _object(raw, where)
        return MetricRecord({k: _metric_value(v) for k, v in items.items()})
    except (TypeError, ValueError) as exc:
        raise DeserializationError(f"{where}: {exc}") from None


def _config_value(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"f"}:
            return from_json_float(value)
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise ValueError(
                'an object in a config value must be {"b64": "<base64>"} or {"f": "NaN"}'
            )
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"invalid base64: {exc}") from None
    if isinstance(value, list):
        return [_config_value(v) for v in value]
    return value


def _decode_record(raw: object, arrays: dict[str, NDArray], used: set[str]) -> tuple[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
        raise DeserializationError("frame 0: each content entry must be an object with a str key")
    key, kind = raw["key"], raw.get("type")
    where = f"frame 0: record {key!r:.80}"
    expected = {"key", "type", "tensors" if kind == "array" else "items"}
    if set(raw) != expected:
        raise DeserializationError(f"{where}: fields must be {sorted(expected)}")
    if kind == "metric":
        return key, decode_metrics(raw["items"], where)
    try:
        if kind == "config":
            items = _object(raw["items"], where)
            return key, ConfigRecord({k: _config_value(v) for k, v in items.items()})
    except (TypeError, ValueError) as exc:
        raise DeserializationError(f"{where}: {exc}") from None
    if kind != "array":
        raise DeserializationError(f"{where}: unknown record type {kind!r:.40}")
    pairs = raw["tensors"]
    if not isinstance(pairs, list):
        raise DeserializationError(f"{where}: tensors must be a list of [name, tensor key]")
    record = ArrayRecord()
    for pair in pairs:
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise DeserializationError(f"{where}: tensors must be a list of [name, tensor key]")
        name, tkey = pair
        if name in record:
            raise DeserializationError(f"{where}: duplicate array name {name!r:.80}")
        if tkey not in arrays or tkey in used:
            problem = "is used twice" if tkey in used else "is not in the payload"
            raise DeserializationError(f"{where}: tensor key {tkey!r:.80} {problem}")
        used.add(tkey)
        record[name] = arrays[tkey]
    return key, record


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DeserializationError(f"{where}: items must be an object")
    return value


def decode_content(raw: object, arrays: dict[str, NDArray], limits: DecodeLimits) -> RecordDict:
    """Build the RecordDict described by a header's ``content`` list over ``arrays``."""
    if not isinstance(raw, list) or len(raw) > limits.max_records:
        raise DeserializationError(
            f"frame 0: content must be a list of at most {limits.max_records} records"
        )
    content = RecordDict()
    used: set[str] = set()
    for entry in raw:
        key, record = _decode_record(entry, arrays, used)
        if key in content:
            raise DeserializationError(f"frame 0: duplicate record key {key!r:.80}")
        content[key] = record
    if len(used) != len(arrays):
        raise DeserializationError(
            f"payload: {len(arrays) - len(used)} tensors belong to no record"
        )
    return content


def decode_error(raw: object) -> Error:
    """Validate the ``error`` object of a header."""
    if (
        not isinstance(raw, dict)
        or set(raw) != {"code", "reason"}
        or isinstance(raw["code"], bool)
        or not isinstance(raw["code"], int)
        or not isinstance(raw["reason"], str)
    ):
        raise DeserializationError('frame 0: error must be {"code": int, "reason": str}')
    return Error(code=raw["code"], reason=raw["reason"])


def decode(frames: Sequence[object], *, limits: DecodeLimits | None = None) -> Message:
    """Deserialize a message from its frames, copying no tensor data.

    Args:
        frames: the received frames (bytes, memoryview, uint8 ndarray or zmq.Frame).
        limits: caps on sizes and counts (default :class:`DecodeLimits`).

    Returns:
        The message. Its arrays are read-only views of ``frames`` (for read-only
        buffers), and keep those buffers alive.

    Raises:
        DeserializationError: the frames are malformed in any way; the message
            says what is wrong. No other exception escapes.
    """
    limits = limits or _DEFAULT_LIMITS
    if not frames:
        raise DeserializationError("no frames")
    views = [as_memoryview(f, i) for i, f in enumerate(frames)]
    return decode_parsed(decode_header(views[0], limits), views, limits=limits)


def decode_parsed(
    header: dict[str, Any], views: Sequence[memoryview], *, limits: DecodeLimits | None = None
) -> Message:
    """:func:`decode` for frames whose header is already parsed: frame 0 is not read again.

    Args:
        header: frame 0 as :func:`parse_envelope` (or :func:`decode_header`)
            returned it, over the same ``limits``.
        views: all the frames, frame 0 included, as :func:`parse_envelope` returned them.
        limits: caps on sizes and counts (default :class:`DecodeLimits`).

    Raises:
        DeserializationError: as :func:`decode`.
    """
    limits = limits or _DEFAULT_LIMITS
    if header.get("kind") != KIND_MESSAGE:
        raise DeserializationError(f"frame 0: kind {header.get('kind')!r:.40} is not a message")
    allowed = {"v", "kind", "metadata", "content", "error"}
    if set(header) - allowed or ("content" in header) == ("error" in header):
        raise DeserializationError("frame 0: header needs v, kind, metadata, and content or error")
    metadata = decode_metadata(header.get("metadata"))
    if "error" in header:
        if len(views) != 1:
            raise DeserializationError(
                f"an error message has no payload, got {len(views) - 1} extra frames"
            )
        return Message.from_parts(metadata, None, decode_error(header["error"]))
    arrays = parse_payload(views[1:], limits) if len(views) > 1 else {}
    return Message.from_parts(metadata, decode_content(header["content"], arrays, limits), None)
