"""``fedzero-bench codec``: encode + decode of a 100 MB model vs safetensors save + load."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import safetensors.numpy

from fedzero.core import ArrayRecord, Message, RecordDict, decode, encode

from ._stats import BenchError, Summary, machine, time_runs


def _models(total_bytes: int) -> dict[str, dict[str, np.ndarray[Any, Any]]]:
    rng = np.random.default_rng(0)
    n = total_bytes // 4
    per_layer = n // 50
    return {
        f"1 x {n:,} float32": {"w": rng.random(n, dtype=np.float32)},
        f"50 x {per_layer:,} float32": {
            f"layer{i}.weight": rng.random(per_layer, dtype=np.float32) for i in range(50)
        },
    }


def _round_trip(msg: Message) -> Message:
    return decode(encode(msg))


def _safetensors_round_trip(arrays: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    return safetensors.numpy.load(safetensors.numpy.save(arrays))


def run_codec_bench(total_bytes: int = 100_000_000, runs: int = 9) -> dict[str, Any]:
    """Measure fedzero encode+decode and safetensors save+load on the same models.

    Returns:
        A JSON-ready dict with one entry per model shape.
    """
    results = []
    for name, arrays in _models(total_bytes).items():
        msg = Message(RecordDict({"arrays": ArrayRecord(arrays)}), 1, "train")
        got = _round_trip(msg)
        for key, arr in arrays.items():  # correctness before speed
            if not np.array_equal(got.content.array_records["arrays"][key], arr):
                raise BenchError(f"round trip changed {key}")
        ours = time_runs(functools.partial(_round_trip, msg), runs)
        ref = time_runs(functools.partial(_safetensors_round_trip, arrays), runs)
        results.append(_entry(name, total_bytes, ours, ref))
    return {
        "benchmark": "codec",
        "bytes": total_bytes,
        "runs": runs,
        "machine": machine(),
        "results": results,
    }


def _entry(name: str, nbytes: int, ours: Summary, ref: Summary) -> dict[str, Any]:
    return {
        "model": name,
        "fedzero_encode_decode_s": ours.as_dict(),
        "safetensors_save_load_s": ref.as_dict(),
        "speedup_median": ref.median / ours.median,
        "fedzero_gb_per_s": nbytes / ours.median / 1e9,
    }


def print_codec_table(report: dict[str, Any]) -> None:
    """Print the report as a table."""
    from rich.console import Console
    from rich.table import Table

    title = (
        f"codec: encode + decode of {report['bytes'] / 1e6:.0f} MB, "
        f"median \\[min-max] over {report['runs']} runs"
    )
    table = Table(title=title)
    for col in ("model", "fedzero encode+decode", "safetensors save+load", "speed-up"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for r in report["results"]:
        ours = Summary(**r["fedzero_encode_decode_s"])
        ref = Summary(**r["safetensors_save_load_s"])
        table.add_row(r["model"], ours.ms(), ref.ms(), f"{r['speedup_median']:,.0f}x")
    Console().print(table)
