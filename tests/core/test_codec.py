"""Round trips, zero copy, and safetensors interoperability of the wire codec."""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch as safetensors_torch
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from fedzero.core import (
    BFLOAT16,
    ArrayRecord,
    ConfigRecord,
    DeserializationError,
    Error,
    ErrorCode,
    Message,
    MetricRecord,
    RecordDict,
    decode,
    encode,
)
from tests.core.strategies import record_dicts


def _message(content: RecordDict, **kw: Any) -> Message:
    return Message(content, dst_node_id=kw.pop("dst", 7), message_type="train", **kw)


@settings(max_examples=200, deadline=None)
@given(record_dicts, st.sampled_from(["bytes", "memoryview", "bytearray"]))
def test_decode_of_encode_is_identity(content: RecordDict, as_type: str) -> None:
    msg = _message(content, group_id="3")
    frames = encode(msg)
    convert = {"bytes": bytes, "memoryview": memoryview, "bytearray": bytearray}[as_type]
    received = [
        convert(memoryview(f).cast("B")) if not isinstance(f, bytes) else convert(f) for f in frames
    ]
    assert decode(received) == msg


@settings(max_examples=100, deadline=None)
@given(record_dicts)
def test_payload_is_a_safetensors_file(content: RecordDict) -> None:
    frames = encode(_message(content))
    arrays = [a for rec in content.array_records.values() for a in rec.values()]
    if not arrays:
        assert len(frames) == 1
        return
    blob = b"".join(bytes(memoryview(f).cast("B")) for f in frames[1:])
    if any(a.dtype == BFLOAT16 for a in arrays):
        torch = pytest.importorskip("torch")

        loaded_t = safetensors_torch.load(blob)
        assert len(loaded_t) == len(arrays)
        assert all(isinstance(t, torch.Tensor) for t in loaded_t.values())
        return
    loaded = safetensors.numpy.load(blob)
    assert sorted(a.tobytes() for a in loaded.values()) == sorted(a.tobytes() for a in arrays)


def test_single_record_uses_array_names_as_tensor_keys() -> None:
    rec = ArrayRecord({"conv.weight": np.ones((2, 2), np.float32), "conv.bias": np.zeros(2)})
    frames = encode(_message(RecordDict({"arrays": rec})))
    loaded = safetensors.numpy.load(b"".join(bytes(f) for f in frames[1:]))
    assert set(loaded) == {"conv.weight", "conv.bias"}
    np.testing.assert_array_equal(loaded["conv.weight"], rec["conv.weight"])


def test_colliding_names_across_records_round_trip() -> None:
    a = ArrayRecord({"w": np.arange(3, dtype=np.int32)})
    b = ArrayRecord({"w": np.arange(4, dtype=np.int64), "a/w": np.ones(1, np.uint8)})
    msg = _message(RecordDict({"a": a, "b": b}))
    assert decode(encode(msg)) == msg


def test_encode_copies_no_tensor_data() -> None:
    big = np.random.default_rng(0).random(300_000, dtype=np.float32)
    small = np.arange(10, dtype=np.float64).reshape(2, 5)
    bf = np.ones((3, 4), dtype=BFLOAT16)
    rec = ArrayRecord({"big": big, "small": small, "bf": bf}, copy=False)
    frames = encode(_message(RecordDict({"arrays": rec})))
    assert len(frames) == 2 + 3
    for frame, arr in zip(frames[2:], (big, small, bf), strict=True):
        assert np.shares_memory(frame, arr)


def test_safetensors_library_file_decodes_zero_copy() -> None:
    tensors = {
        "b": np.arange(12, dtype=np.float32).reshape(3, 4),
        "a": np.array([True, False]),
        "c": np.arange(5, dtype=np.uint64),
        "e": np.zeros((0, 3), dtype=np.int16),
    }
    blob = safetensors.numpy.save(tensors)
    header_len = int.from_bytes(blob[:8], "little")
    import json

    header = json.loads(blob[8 : 8 + header_len])
    header.pop("__metadata__", None)
    spans = sorted((v["data_offsets"], k) for k, v in header.items())
    base = 8 + header_len
    buf = memoryview(blob)
    payload = [buf[:base]] + [buf[base + b : base + e] for (b, e), _ in spans]
    content = [{"key": "arrays", "type": "array", "tensors": [[k, k] for _, k in spans]}]
    frame0 = _header_with_content(content)
    msg = decode([frame0, *payload])
    rec = msg.content["arrays"]
    assert isinstance(rec, ArrayRecord)
    for key, arr in tensors.items():
        np.testing.assert_array_equal(rec[key], arr)
        assert rec[key].dtype == arr.dtype
        if arr.size:
            assert np.shares_memory(rec[key], np.frombuffer(blob, np.uint8))


def _header_with_content(content: list[dict[str, Any]]) -> bytes:
    from fedzero.core.wire import encode_header

    return encode_header(_message(RecordDict()).metadata, content)


def test_decode_zmq_frames_zero_copy(zmq_context: zmq.Context[Any]) -> None:
    arr = np.random.default_rng(1).random((512, 256), dtype=np.float32)  # 512 KiB
    msg = _message(RecordDict({"arrays": ArrayRecord({"x": arr}), "m": MetricRecord({"n": 3})}))
    push = zmq_context.socket(zmq.PAIR)
    pull = zmq_context.socket(zmq.PAIR)
    try:
        push.bind("inproc://codec")
        pull.connect("inproc://codec")
        push.send_multipart(encode(msg), copy=False)
        assert pull.poll(5000)
        frames = pull.recv_multipart(copy=False)
        got = decode(frames)
        x = got.content["arrays"]["x"]  # type: ignore[index]
        np.testing.assert_array_equal(x, arr)
        assert np.shares_memory(x, np.frombuffer(frames[2].buffer, np.uint8))
        assert not x.flags.writeable
    finally:
        push.close(linger=0)
        pull.close(linger=0)


def test_error_message_round_trip() -> None:
    original = _message(RecordDict())
    reply = original.create_error_reply(Error(ErrorCode.CLIENT_APP_RAISED, "boom: ValueError"))
    frames = encode(reply)
    assert len(frames) == 1
    got = decode(frames)
    assert got == reply
    assert got.has_error()
    assert got.error.code == ErrorCode.CLIENT_APP_RAISED
    assert got.metadata.reply_to_message_id == original.metadata.message_id


def test_metric_nan_and_inf_survive() -> None:
    msg = _message(RecordDict({"m": MetricRecord({"loss": float("nan"), "x": float("-inf")})}))
    got = decode(encode(msg)).content["m"]
    assert np.isnan(got["loss"])
    assert got["x"] == float("-inf")


def test_config_bytes_and_types_round_trip() -> None:
    cfg = ConfigRecord(
        {"blob": b"\x00\xff", "s": "x", "i": 1, "f": 1.0, "b": True, "l": [b"a", b"b"]}
    )
    got = decode(encode(_message(RecordDict({"c": cfg})))).content["c"]
    assert got == cfg
    assert isinstance(got["i"], int)
    assert isinstance(got["f"], float)
    assert isinstance(got["b"], bool)


def test_reply_ttl_is_capped_by_remaining_ttl() -> None:
    msg = _message(RecordDict(), ttl=100.0)
    msg.metadata.created_at = time.time() - 60
    reply = msg.create_reply(RecordDict(), ttl=1000.0)
    assert 39.0 < reply.metadata.ttl <= 40.0
    assert reply.metadata.src_node_id == msg.metadata.dst_node_id
    assert reply.metadata.dst_node_id == msg.metadata.src_node_id


def test_checkpoint_is_the_frames_written_in_order(tmp_path: Any) -> None:
    rec = ArrayRecord({"w": np.arange(6, dtype=np.float64).reshape(2, 3)})
    frames = encode(_message(RecordDict({"arrays": rec})))
    path = tmp_path / "ckpt.safetensors"
    with io.FileIO(path, "w") as fh:
        for f in frames[1:]:
            fh.write(f)
    np.testing.assert_array_equal(safetensors.numpy.load_file(str(path))["w"], rec["w"])


def test_arrays_of_a_different_endianness_rejected_or_converted() -> None:
    arr = np.arange(4, dtype=">i4")
    rec = ArrayRecord({"x": arr})
    assert rec["x"].dtype == np.dtype("<i4")
    got = decode(encode(_message(RecordDict({"a": rec})))).content["a"]
    np.testing.assert_array_equal(got["x"], arr)


def test_decode_raises_only_deserialization_error_for_non_buffers() -> None:
    with pytest.raises(DeserializationError, match="not a buffer"):
        decode([123])  # type: ignore[list-item]
    with pytest.raises(DeserializationError, match="no frames"):
        decode([])
