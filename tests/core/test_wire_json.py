"""Strict JSON on orjson's fast path refuses exactly what the strict reference refuses.

The fast path takes orjson's parse only when writing it back gives the input's
bytes; these tests feed compact text (the fast path's own form) with every trap
in it, and check random values and texts against a plain standard-library
reference with the same rules.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedzero.core import ArrayRecord, DeserializationError, Message, RecordDict, encode
from fedzero.core.wire import control, decode_parsed, dumps_strict, loads_strict, parse_envelope

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
SCALARS = st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False)
VALUES = st.recursive(
    SCALARS | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def reference(text: bytes) -> Any:
    """The rules, spelled out with the standard library alone."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate key")
        return dict(items)

    def constant(name: str) -> Any:
        raise ValueError(name)

    def number(s: str) -> float:
        if not math.isfinite(float(s)):
            raise ValueError(s)
        return float(s)

    value = json.loads(text, object_pairs_hook=pairs, parse_constant=constant, parse_float=number)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # raises on a lone surrogate
        elif isinstance(item, int) and not -(2**63) <= item < 2**63:
            raise ValueError("int range")
        elif isinstance(item, dict):
            stack.extend([*item.keys(), *item.values()])
        elif isinstance(item, list):
            stack.extend(item)
    return value


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b'{"a":1,"a":1}', "duplicate key"),  # orjson keeps one: its text is shorter
        (b'{"a":{"b":1,"b":2}}', "duplicate key"),
        (b'{"a":9223372036854775808}', "64 bits"),  # orjson reads it exactly (u64)
        (b'{"a":18446744073709551615}', "64 bits"),
        (b'{"a":18446744073709551616}', "64 bits"),  # orjson makes it a float
        (b'{"a":-9223372036854775809}', "64 bits"),
        (b"[1e400]", "out of a float's range"),  # no token, but no float holds it
        (b'{"a":"\\ud800"}', "lone surrogate"),
        (b'{"a":NaN}', "NaN is not allowed"),
        (b'{"a":"x"', "not valid JSON"),
        (b'{"a":"\xff"}', "not valid UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
)
def test_compact_text_with_a_trap_is_refused(text: bytes, match: str) -> None:
    with pytest.raises(DeserializationError, match=match):
        loads_strict(text, what="frame 0")


def test_the_limits_themselves_are_accepted() -> None:
    text = b'{"max":9223372036854775807,"min":-9223372036854775808,"id":"1234567890123456789x"}'
    assert loads_strict(text, what="x") == {
        "max": 2**63 - 1,
        "min": -(2**63),
        "id": "1234567890123456789x",
    }
    padded = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   '  # a safetensors header
    assert loads_strict(padded, what="x")["w"]["shape"] == [2]
    assert loads_strict(b'{"a": NaN}', what="own file", allow_nan=True)["a"] != 0  # NaN


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_what_we_write_reads_back_the_same(value: Any) -> None:
    written = dumps_strict(value)
    assert loads_strict(written, what="x") == reference(written) == json.loads(written)


SURROGATES = st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), INT64 | st.integers() | st.text() | SURROGATES),
        max_size=4,
    ),
)
def test_any_object_text_is_judged_as_the_reference_judges_it(items: list[tuple[str, Any]]) -> None:
    def compact(v: Any) -> str:  # orjson's own form where it can be, escapes where not
        try:
            json.dumps(v, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(v)
        return json.dumps(v, ensure_ascii=False)

    text = ("{" + ",".join(f"{compact(k)}:{compact(v)}" for k, v in items) + "}").encode()
    try:
        expected = reference(text)
    except (ValueError, UnicodeEncodeError):
        with pytest.raises(DeserializationError):
            loads_strict(text, what="x")
    else:
        assert loads_strict(text, what="x") == expected


def test_writing_keeps_non_finite_floats_and_nulls_apart() -> None:
    value = {"loss": math.nan, "up": [math.inf, None], "none": None}
    assert json.loads(dumps_strict(value)) == {
        "loss": {"f": "NaN"},
        "up": [{"f": "Infinity"}, None],
        "none": None,
    }
    assert dumps_strict({"n": 2**64, 1: "k"}) == b'{"n":18446744073709551616,"1":"k"}'


def test_a_message_is_parsed_once_through_parse_envelope_and_decode_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    content = RecordDict({"arrays": ArrayRecord({"w": np.ones(3, np.float32)})})
    frames = encode(Message(content, dst_node_id=1, message_type="train"))
    parsed: list[bytes] = []
    loads = orjson.loads

    def counting(data: bytes) -> Any:
        parsed.append(bytes(data[:12]))
        return loads(data)

    monkeypatch.setattr(orjson, "loads", counting)
    kind, header, views = parse_envelope(frames)
    msg = decode_parsed(header, views)
    assert kind == "message"
    assert parsed == [b'{"v":1,"kind', b'{"w":{"dtype']  # frame 0 once, the tensor header once
    assert msg.content["arrays"]["w"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(DeserializationError, match="is not a message"):
        decode_parsed(parse_envelope(control("ping"))[1], [])
