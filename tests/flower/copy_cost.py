"""What Flower's copy semantics cost: ArrayRecord snapshots and writable copies of received arrays.

Not a test (speed is no test assertion here): a measurement, run as
``.venv/bin/python tests/flower/copy_cost.py``. For each model size it prints the
best of 7 timings of a plain ``a.copy()`` of every array (the memcpy floor,
measured in the same run), ``ArrayRecord(state_dict)`` (a snapshot, Flower's
semantics) against ``copy=False``, and the writable copies that
``to_numpy_ndarrays()``/``to_torch_state_dict()`` return for a received record
against ``copy=False`` (zero copy, read-only).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from fedzero.core import ArrayRecord, Message, RecordDict, decode, encode


def best(fn: Callable[[], object], n: int = 7) -> float:
    """Best wall time of ``n`` calls, in milliseconds."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def measure(megabytes: int, layers: int = 10) -> dict[str, float]:
    """Timings (ms) for a model of ``megabytes`` float32 MiB in ``layers`` tensors."""
    per = megabytes * 2**20 // 4 // layers
    state_dict = {f"l{i}": torch.randn(per) for i in range(layers)}
    raw = [t.numpy() for t in state_dict.values()]
    sent = Message(RecordDict({"arrays": ArrayRecord(state_dict, copy=False)}), 1, "train")
    received = decode(encode(sent)).content["arrays"]
    return {
        "memcpy floor": best(lambda: [a.copy() for a in raw]),
        "ArrayRecord(sd)": best(lambda: ArrayRecord(state_dict)),
        "ArrayRecord(sd, copy=False)": best(lambda: ArrayRecord(state_dict, copy=False)),
        "to_numpy_ndarrays()": best(received.to_numpy_ndarrays),
        "to_numpy_ndarrays(copy=False)": best(lambda: received.to_numpy_ndarrays(copy=False)),
        "to_torch_state_dict()": best(received.to_torch_state_dict),
        "to_torch_state_dict(copy=False)": best(lambda: received.to_torch_state_dict(copy=False)),
    }


if __name__ == "__main__":
    for mb in (1, 25, 100):
        figures = measure(mb)
        floor = figures["memcpy floor"]
        print(f"{mb} MiB model:")
        for name, ms in figures.items():
            print(f"  {name:<34} {ms:9.3f} ms  ({ms / floor:5.2f} x memcpy floor)")
