"""Frame 0 is strict RFC 8259 JSON both ways; payload bytes are checked (issue 11)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fedzero.core import (
    ArrayRecord,
    ConfigRecord,
    DeserializationError,
    Message,
    MetricRecord,
    RecordDict,
    decode,
    encode,
)
from fedzero.core.wire import control, dumps_strict, loads_strict, parse_envelope


def _rfc8259(data: bytes) -> object:
    """Parse as a strict JSON parser would: no NaN/Infinity tokens."""

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b'{"a": ["x", {"b": "\\udbff!"}]}', "lone surrogate"),
        (b'{"a": 9223372036854775808}', "64 bits"),
        (b'{"a": -9223372036854775809}', "64 bits"),
        (b'{"a": NaN}', "NaN is not allowed"),
        (b'{"a": -Infinity}', "Infinity is not allowed"),
    ],
)
def test_loads_strict_refuses_what_a_later_reader_would_trip_on(text: bytes, match: str) -> None:
    with pytest.raises(DeserializationError, match=match):
        loads_strict(text, what="frame 0")


def test_a_surrogate_pair_is_one_valid_character() -> None:
    assert loads_strict(b'{"a": "\\ud83d\\ude00"}', what="x") == {"a": "\U0001f600"}
    assert loads_strict(b'{"a": 9223372036854775807}', what="x") == {"a": 2**63 - 1}


def test_non_finite_metrics_travel_as_standard_json_and_come_back() -> None:
    metrics = MetricRecord({"loss": math.nan, "up": math.inf, "down": [-math.inf, 1.5]})
    config = ConfigRecord({"lr": math.inf, "ok": 0.5})
    content = RecordDict({"metrics": metrics, "config": config})
    frames = encode(Message(content, dst_node_id=1, message_type="train"))
    header = _rfc8259(bytes(frames[0]))
    assert isinstance(header, dict)
    assert header["content"][0]["items"]["loss"] == {"f": "NaN"}
    assert header["content"][0]["items"]["down"] == [{"f": "-Infinity"}, 1.5]
    back = decode(frames).content
    assert math.isnan(back["metrics"]["loss"])
    assert back["metrics"]["up"] == math.inf
    assert back["metrics"]["down"] == [-math.inf, 1.5]
    assert back["config"]["lr"] == math.inf


def test_control_messages_are_standard_json_and_never_raise_on_bad_text() -> None:
    (frame,) = control("report", round=1, metrics={"loss": math.nan})
    assert _rfc8259(frame) == {
        "v": 1,
        "kind": "report",
        "round": 1,
        "metrics": {"loss": {"f": "NaN"}},
    }
    assert dumps_strict({"reason": "bad \ud800 text"}) == b'{"reason":"bad ? text"}'


def test_invalid_bool_bytes_are_refused() -> None:
    content = RecordDict({"arrays": ArrayRecord({"flags": np.array([True, False, True])})})
    frames = [bytes(f) for f in encode(Message(content, dst_node_id=1, message_type="train"))]
    assert decode(frames).content["arrays"]["flags"].tolist() == [True, False, True]
    frames[-1] = b"\x01\x02\x00"
    with pytest.raises(DeserializationError, match="BOOL bytes must be 0 or 1"):
        decode(frames)


def test_control_fields_are_checked_against_the_protocol_range() -> None:
    frame = b'{"v":1,"kind":"run_end","run_id":9223372036854775807}'
    assert parse_envelope([frame])[1]["run_id"] == 2**63 - 1
    for bad in (b"-1", b"9223372036854775808", b"true", b"1.5"):
        with pytest.raises(DeserializationError):
            parse_envelope([b'{"v":1,"kind":"run_end","run_id":' + bad + b"}"])
