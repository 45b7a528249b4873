"""``fedzero-bench headers``: the strict JSON of real frame-0 headers, parse and write.

fedzero's :func:`~fedzero.core.wire.loads_strict` / ``dumps_strict`` (orjson,
checked) against the standard library doing the same checks (an object hook
refusing duplicate keys, a constant hook refusing ``NaN``, scans for surrogate
escapes and long integers: what fedzero did before orjson) and against plain
``json.loads`` / ``json.dumps``, on headers the codec writes: a ping, a hello,
a message with 2 and with 200 arrays, and a 200-tensor safetensors header.
"""

from __future__ import annotations

import functools
import json
import re
import statistics
import timeit
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from fedzero.core import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict, encode
from fedzero.core.wire import control, dumps_strict, loads_strict

from ._stats import BenchError, machine

_SURROGATE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_LONG: Final = re.compile(r"[0-9]{19}")


def _stdlib_strict(data: bytes) -> Any:
    """The strict parse with the standard library alone (the reference)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) != len(items):
            raise BenchError("duplicate key")
        return out

    def constant(name: str) -> Any:
        raise BenchError(name)

    text = data.decode("utf-8")
    value = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    if _SURROGATE.search(text) or _LONG.search(text):
        raise BenchError("the reference headers have no surrogates or long integers")
    return value


def _stdlib_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def real_headers() -> dict[str, bytes]:
    """Frame 0 (and one safetensors header) as fedzero writes them."""

    def message(layers: int) -> list[Any]:
        arrays = ArrayRecord({f"layer{i}.weight": np.zeros(10, np.float32) for i in range(layers)})
        content = RecordDict(
            {
                "arrays": arrays,
                "config": ConfigRecord({"lr": 0.1, "epochs": 1}),
                "metrics": MetricRecord({"num-examples": 100, "loss": 0.25}),
            }
        )
        return encode(Message(content, dst_node_id=12345, message_type="train"))

    big = message(200)
    hello = control("hello", node_id=None, node_config={"partition-id": 3}, version="fedzero/1")
    return {
        "ping": control("ping")[0],
        "hello": hello[0],
        "message, 2 arrays": bytes(message(2)[0]),
        "message, 200 arrays": bytes(big[0]),
        "safetensors header, 200 tensors": bytes(big[1][8:]),
    }


def _us(fn: Callable[[], object], runs: int) -> float:
    number = 200
    return statistics.median(timeit.repeat(fn, number=number, repeat=runs)) / number * 1e6


def run_headers_bench(runs: int = 9) -> dict[str, Any]:
    """Median microseconds to parse and to write each header, every way."""
    rows: dict[str, dict[str, float]] = {}
    for name, data in real_headers().items():
        value = loads_strict(data, what=name)
        if value != _stdlib_strict(data):
            raise BenchError(f"{name}: fedzero and the reference parse differ")
        rows[name] = {
            "bytes": len(data),
            "parse_fedzero_us": _us(functools.partial(loads_strict, data, what=name), runs),
            "parse_stdlib_strict_us": _us(functools.partial(_stdlib_strict, data), runs),
            "parse_json_loads_us": _us(functools.partial(json.loads, data), runs),
            "write_fedzero_us": _us(functools.partial(dumps_strict, value), runs),
            "write_stdlib_us": _us(functools.partial(_stdlib_dumps, value), runs),
        }
    return {"benchmark": "headers", "runs": runs, "headers": rows, "machine": machine()}


def print_headers_report(report: dict[str, Any]) -> None:
    """Print the report as a table."""
    print(
        f"median us of {report['runs']} runs: parse (fedzero / stdlib strict / json.loads), write"
    )
    for name, r in report["headers"].items():
        print(
            f"  {name:<32} {r['bytes']:>6} B  parse {r['parse_fedzero_us']:8.1f} / "
            f"{r['parse_stdlib_strict_us']:8.1f} / {r['parse_json_loads_us']:8.1f}   "
            f"write {r['write_fedzero_us']:7.1f} / {r['write_stdlib_us']:7.1f}"
        )
