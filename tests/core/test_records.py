"""Validation and behaviour of the data model."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fedzero.core import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)


def test_array_record_from_list_names_in_order() -> None:
    rec = ArrayRecord([np.zeros(2), np.ones(3)])
    assert list(rec) == ["0", "1"]
    assert rec.to_numpy_ndarrays()[1].shape == (3,)


def test_array_record_is_a_snapshot_unless_copy_false() -> None:
    arr = np.arange(10, dtype=np.float32)
    rec = ArrayRecord({"a": arr})
    arr += 1  # a later in-place update (an optimizer step) does not reach the record
    assert rec["a"][0] == 0
    fast = ArrayRecord({"a": arr}, copy=False)
    assert np.shares_memory(fast["a"], arr)


def test_array_record_keeps_read_only_arrays_by_reference() -> None:
    arr = np.arange(10, dtype=np.float32)
    arr.flags.writeable = False  # as arrays decoded from the wire are
    assert np.shares_memory(ArrayRecord({"a": arr})["a"], arr)


def test_array_record_copies_non_contiguous_once() -> None:
    arr = np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]
    rec = ArrayRecord({"a": arr})
    assert rec["a"].flags.c_contiguous
    np.testing.assert_array_equal(rec["a"], arr)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ([1, 2, 3], "np.asarray"),
        (np.array(["a"]), "not supported"),
        (np.zeros(2, dtype=np.complex64), "not supported"),
        (np.zeros(2, dtype=object), "not supported"),
    ],
)
def test_array_record_rejects_bad_values(value: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        ArrayRecord({"x": value})


def test_array_record_rejects_non_str_names() -> None:
    with pytest.raises(TypeError, match="names must be str"):
        ArrayRecord({1: np.zeros(1)})  # type: ignore[dict-item]


def test_array_record_equality_is_bitwise() -> None:
    a = ArrayRecord({"x": np.array([np.nan, 1.0])})
    b = ArrayRecord({"x": np.array([np.nan, 1.0])})
    c = ArrayRecord({"x": np.array([np.nan, 1.0], dtype=np.float32)})
    assert a == b
    assert a != c


def test_metric_record_validation() -> None:
    m = MetricRecord({"acc": np.float32(0.5), "n": np.int64(3), "l": [1.0, 2.0]})
    assert isinstance(m["acc"], float)
    assert isinstance(m["n"], int)
    with pytest.raises(TypeError, match="bool is not a metric"):
        MetricRecord({"flag": True})
    with pytest.raises(TypeError, match="one type"):
        MetricRecord({"l": [1, 2.0]})
    with pytest.raises(TypeError, match="expected int or float"):
        MetricRecord({"s": "x"})
    with pytest.raises(ValueError, match="64 bits"):
        MetricRecord({"big": 2**64})


def test_config_record_validation() -> None:
    c = ConfigRecord({"lr": 0.1, "name": "x", "on": True, "blob": b"\x00", "ids": [1, 2]})
    assert c["on"] is True
    with pytest.raises(TypeError, match="expected int, float, bool, str or bytes"):
        ConfigRecord({"d": {"a": 1}})
    with pytest.raises(TypeError, match="one type"):
        ConfigRecord({"l": ["a", 1]})


def test_record_dict_typed_views() -> None:
    rd = RecordDict({"a": ArrayRecord(), "m": MetricRecord(), "c": ConfigRecord()})
    assert list(rd.array_records) == ["a"]
    assert list(rd.metric_records) == ["m"]
    assert list(rd.config_records) == ["c"]
    with pytest.raises(TypeError, match="expected ArrayRecord"):
        rd["x"] = {"a": 1}  # type: ignore[assignment]


def test_message_validation() -> None:
    with pytest.raises(ValueError, match="message_type"):
        Message(RecordDict(), 1, "fit")
    with pytest.raises(TypeError, match="RecordDict"):
        Message({}, 1, "train")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        Message(RecordDict(), 1, "train", ttl=0)
    assert Message(RecordDict(), 1, "train.finetune").metadata.message_type == "train.finetune"


def test_message_content_or_error() -> None:
    msg = Message(RecordDict(), 1, "query")
    assert msg.has_content()
    with pytest.raises(ValueError, match="holds content"):
        _ = msg.error
    err = msg.create_error_reply(Error(1, "x"))
    assert err.has_error()
    with pytest.raises(ValueError, match="holds an error"):
        _ = err.content


def test_expiry() -> None:
    msg = Message(RecordDict(), 1, "train", ttl=10)
    assert not msg.metadata.is_expired()
    assert msg.metadata.is_expired(time.time() + 11)


def test_context_defaults_are_independent() -> None:
    a, b = Context(1, 2), Context(1, 3)
    a.state["x"] = MetricRecord({"n": 1})
    assert "x" not in b.state
