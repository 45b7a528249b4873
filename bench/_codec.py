"""``fedzero-bench codec``: a 100 MB model through fedzero's codec vs safetensors.

Two figures per model shape:

- *over ipc* (the one that counts): encode + send + receive + decode through a
  pair of ZeroMQ sockets on ``ipc://``, against safetensors save + send +
  receive + load through the same sockets: both move the bytes;
- *in memory*: encode + decode against safetensors save + load, no transport
  (fedzero's encode and decode copy nothing, so this measures the copies
  safetensors makes and fedzero does not).
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import safetensors.numpy
import zmq

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


@contextlib.contextmanager
def _ipc_pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    """Two connected PAIR sockets on a private ``ipc://`` path."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    with tempfile.TemporaryDirectory(prefix="fedzero-bench-codec-") as tmp:
        send, recv = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        try:
            recv.bind(f"ipc://{tmp}/codec")
            send.connect(f"ipc://{tmp}/codec")
            yield send, recv
        finally:
            send.close(linger=0)
            recv.close(linger=0)
            ctx.term()


def _over_ipc(msg: Message, send: zmq.Socket[bytes], recv: zmq.Socket[bytes]) -> Message:
    frames: list[Any] = encode(msg)  # buffers the socket sends without copying
    send.send_multipart(frames, copy=False)
    return decode(recv.recv_multipart(copy=False))


def _safetensors_over_ipc(
    arrays: dict[str, np.ndarray[Any, Any]], send: zmq.Socket[bytes], recv: zmq.Socket[bytes]
) -> dict[str, Any]:
    send.send(safetensors.numpy.save(arrays), copy=False)
    return safetensors.numpy.load(recv.recv(copy=False).bytes)


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
        with _ipc_pair() as (send, recv):
            ours_ipc = time_runs(functools.partial(_over_ipc, msg, send, recv), runs)
            ref_ipc = time_runs(functools.partial(_safetensors_over_ipc, arrays, send, recv), runs)
        entry = _entry(name, total_bytes, ours, ref)
        entry.update(
            {
                "fedzero_over_ipc_s": ours_ipc.as_dict(),
                "safetensors_over_ipc_s": ref_ipc.as_dict(),
                "speedup_over_ipc_median": ref_ipc.median / ours_ipc.median,
                "fedzero_over_ipc_gb_per_s": total_bytes / ours_ipc.median / 1e9,
            }
        )
        results.append(entry)
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

    title = f"codec: {report['bytes'] / 1e6:.0f} MB, median \\[min-max] over {report['runs']} runs"
    table = Table(title=title)
    for col in ("model", "path", "fedzero", "safetensors", "speed-up"):
        table.add_column(col, justify="right" if col not in ("model", "path") else "left")
    for r in report["results"]:
        for path, key, ref_key, ratio in (
            (
                "over ipc (moves the bytes)",
                "fedzero_over_ipc_s",
                "safetensors_over_ipc_s",
                "speedup_over_ipc_median",
            ),
            ("in memory", "fedzero_encode_decode_s", "safetensors_save_load_s", "speedup_median"),
        ):
            ours, ref = Summary(**r[key]), Summary(**r[ref_key])
            table.add_row(r["model"], path, ours.ms(), ref.ms(), f"{r[ratio]:,.1f}x")
    Console().print(table)
