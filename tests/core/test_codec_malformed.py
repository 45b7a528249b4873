"""Malformed frames: every one raises DeserializationError naming the problem."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedzero.core import (
    ArrayRecord,
    ConfigRecord,
    DecodeLimits,
    DeserializationError,
    Message,
    MetricRecord,
    RecordDict,
    decode,
    encode,
)


def _valid_frames() -> list[bytes]:
    content = RecordDict(
        {
            "arrays": ArrayRecord(
                {
                    "w": np.arange(12, dtype=np.float32).reshape(3, 4),
                    "b": np.arange(3, dtype=np.int64),
                    "e": np.zeros(0, dtype=np.float16),
                }
            ),
            "metrics": MetricRecord({"loss": 0.25, "n": 10}),
            "config": ConfigRecord({"lr": 0.1, "blob": b"\x01\x02"}),
        }
    )
    frames = encode(Message(content, 5, "train", group_id="1"))
    return [bytes(memoryview(f).cast("B")) for f in frames]


VALID = _valid_frames()


def _st_header(frames: list[bytes]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(frames[1][8:])
    return result


def _with_st_header(frames: list[bytes], header: dict[str, Any], pad: bool = True) -> list[bytes]:
    raw = json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    return [frames[0], len(raw).to_bytes(8, "little") + raw, *frames[2:]]


def _with_header(frames: list[bytes], header: dict[str, Any]) -> list[bytes]:
    return [json.dumps(header).encode(), *frames[1:]]


def _h0() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(VALID[0])
    return result


CASES: list[tuple[str, list[bytes], str]] = []


def case(name: str, frames: list[bytes], match: str) -> None:
    CASES.append((name, frames, match))


# -- frame 0 ------------------------------------------------------------------
case("not utf8", [b"\xff\xfe", *VALID[1:]], "UTF-8")
case("not json", [b"{nope", *VALID[1:]], "not valid JSON")
case("not an object", [b"[1,2]", *VALID[1:]], "JSON object")
case("deep nesting", [b"[" * 100_000 + b"]" * 100_000, *VALID[1:]], "nested too deeply")
case("huge int", [b'{"v":' + b"9" * 5000 + b"}", *VALID[1:]], "frame 0")
case("unknown version", _with_header(VALID, {**_h0(), "v": 99}), "unsupported protocol version")
case(
    "missing version", _with_header(VALID, {k: v for k, v in _h0().items() if k != "v"}), "version"
)
case("unknown kind", _with_header(VALID, {**_h0(), "kind": "banana"}), "not a message")
case("duplicate key", [VALID[0][:-1] + b',"v":1}', *VALID[1:]], "duplicate key 'v'")
h = _h0()
h["metadata"]["run_id"] = -1
case("negative run id", _with_header(VALID, h), "run_id")
h = _h0()
h["metadata"]["dst_node_id"] = True
case("bool node id", _with_header(VALID, h), "dst_node_id")
h = _h0()
h["metadata"]["message_type"] = "rm -rf"
case("bad message type", _with_header(VALID, h), "message_type")
h = _h0()
h["metadata"]["ttl"] = -5
case("negative ttl", _with_header(VALID, h), "ttl")
h = _h0()
del h["metadata"]["created_at"]
case("missing field", _with_header(VALID, h), "created_at")
h = _h0()
h["metadata"]["extra"] = 1
case("unknown field", _with_header(VALID, h), "unknown metadata")
h = _h0()
h["content"][0]["tensors"].append(["x", "nope"])
case("unknown tensor key", _with_header(VALID, h), "not in the payload")
h = _h0()
h["content"][0]["tensors"][1][1] = "w"
case("tensor used twice", _with_header(VALID, h), "used twice")
h = _h0()
h["content"][0]["tensors"].pop()
case("orphan tensor", _with_header(VALID, h), "belong to no record")
h = _h0()
h["content"][0]["tensors"][1][0] = "w"
case("duplicate array name", _with_header(VALID, h), "duplicate array name")
h = _h0()
h["content"].append(dict(h["content"][1]))
case("duplicate record key", _with_header(VALID, h), "duplicate record key")
h = _h0()
h["content"][1]["items"]["loss"] = "high"
case("metric not a number", _with_header(VALID, h), "MetricRecord")
h = _h0()
h["content"][2]["items"]["blob"] = {"b64": "!!!"}
case("bad base64", _with_header(VALID, h), "base64")
h = _h0()
h["content"][2]["type"] = "mystery"
case("unknown record type", _with_header(VALID, h), "unknown record type")
case("header cap", [b" " * (DecodeLimits().max_header_bytes + 1), *VALID[1:]], "header cap")

# -- frame 1 (safetensors header) and tensor frames ---------------------------
case("truncated frame 1", [VALID[0], VALID[1][:5], *VALID[2:]], "need at least 8")
case(
    "header length beyond frame",
    [VALID[0], (10**6).to_bytes(8, "little") + VALID[1][8:], *VALID[2:]],
    "does not match",
)
case(
    "header over cap",
    [VALID[0], (2**40).to_bytes(8, "little") + VALID[1][8:], *VALID[2:]],
    "exceeds the cap",
)
case("extra bytes in frame 1", [VALID[0], VALID[1] + b"xx", *VALID[2:]], "does not match")
case("missing tensor frame", VALID[:-1], "tensor frames follow")
case("extra tensor frame", [*VALID, b"\x00" * 4], "tensor frames follow")
case("truncated tensor frame", [*VALID[:2], VALID[2][:-1], *VALID[3:]], "bytes, tensor")
case("extended tensor frame", [*VALID[:2], VALID[2] + b"\x00" * 4, *VALID[3:]], "bytes, tensor")
case("swapped tensor frames", [*VALID[:2], VALID[3], VALID[2], *VALID[4:]], "bytes, tensor")
case(
    "error message with payload",
    [
        b'{"v":1,"kind":"message","metadata":'
        + json.dumps(_h0()["metadata"]).encode()
        + b',"error":{"code":1,"reason":"x"}}',
        VALID[1],
    ],
    "no payload",
)
sth = _st_header(VALID)
sth["w"]["dtype"] = "F128"
case("unknown dtype", _with_st_header(VALID, sth), "unknown dtype")
sth = _st_header(VALID)
sth["w"]["shape"] = [3, 5]
case("shape x itemsize != bytes", _with_st_header(VALID, sth), "bytes of data")
sth = _st_header(VALID)
sth["w"]["shape"] = [-3, -4]
case("negative dimension", _with_st_header(VALID, sth), "negative dimension")
sth = _st_header(VALID)
sth["w"]["data_offsets"] = [8, 56]
case("hole", _with_st_header(VALID, sth), "leaves a hole|bytes, tensor|overlaps")
sth = _st_header(VALID)
sth["b"]["data_offsets"] = [40, 64]
case("overlap", _with_st_header(VALID, sth), "overlaps|leaves a hole")
sth = _st_header(VALID)
sth["w"]["data_offsets"] = [48, 0]
case("reversed offsets", _with_st_header(VALID, sth), "begin <= end")
sth = _st_header(VALID)
sth["w"]["data_offsets"] = [0, 2**70]
case("offset out of range", _with_st_header(VALID, sth), "does not fit in 64 bits")
sth = _st_header(VALID)
sth["w"]["extra"] = 1
case("unknown entry field", _with_st_header(VALID, sth), "exactly dtype")
sth = _st_header(VALID)
sth["w"]["shape"] = [1] * 40
case("rank over cap", _with_st_header(VALID, sth), "at most")
sth = _st_header(VALID)
sth["__metadata__"] = {"k": 1}
case("bad __metadata__", _with_st_header(VALID, sth), "__metadata__")
raw = VALID[1][8:].rstrip()
dup = raw[:-1] + b',"w":' + json.dumps(_st_header(VALID)["w"]).encode() + b"}"
case(
    "duplicate tensor name",
    [VALID[0], len(dup).to_bytes(8, "little") + dup, *VALID[2:]],
    "duplicate key 'w'",
)
case(
    "NaN in tensor header",
    [VALID[0], b"\x0c\x00\x00\x00\x00\x00\x00\x00" + b'{"a":NaN}   ', *VALID[2:]],
    "NaN is not allowed",
)


@pytest.mark.parametrize(
    ("frames", "match"), [(f, m) for _, f, m in CASES], ids=[n for n, _, _ in CASES]
)
def test_malformed_input_is_named(frames: list[bytes], match: str) -> None:
    with pytest.raises(DeserializationError, match=match):
        decode(frames)


def test_valid_fixture_decodes() -> None:
    assert decode(VALID).content["metrics"]["n"] == 10


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.integers(0, 10_000)),
    st.tuples(st.just("extend"), st.integers(0, 10_000), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("reorder"), st.integers(0, 10_000), st.integers(0, 10_000)),
    st.tuples(st.just("drop"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("duplicate"), st.integers(0, 10_000), st.just(0)),
)


def _mutate(frames: list[bytes], op: tuple[str, int, Any]) -> list[bytes]:
    kind, i, arg = op
    frames = list(frames)
    if not frames:
        return frames
    idx = i % len(frames)
    frame = bytearray(frames[idx])
    if kind == "flip" and frame:
        frame[arg % len(frame)] ^= 1 << (arg % 8) or 1
        frames[idx] = bytes(frame)
    elif kind == "truncate":
        frames[idx] = bytes(frame[: arg % (len(frame) + 1)])
    elif kind == "extend":
        frames[idx] = bytes(frame) + arg
    elif kind == "reorder":
        j = arg % len(frames)
        frames[idx], frames[j] = frames[j], frames[idx]
    elif kind == "drop":
        del frames[idx]
    elif kind == "duplicate":
        frames.insert(idx, frames[idx])
    return frames


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_frames_raise_only_deserialization_error(ops: list[tuple[str, int, Any]]) -> None:
    frames = VALID
    for op in ops:
        frames = _mutate(frames, op)
    try:
        msg = decode(frames)
    except DeserializationError:
        return
    # A mutation may leave a valid message (e.g. a flipped bit inside tensor data):
    # then it must be a fully usable one.
    encode(msg)
