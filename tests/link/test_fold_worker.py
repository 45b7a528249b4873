"""The fold worker keeps every round's jobs in order, however runs interleave."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

from fedzero.core import DeserializationError
from fedzero.link.rounds import AggregateSpec, FoldWorker

# warm=True compiles every kernel first: with a cold Numba cache on a busy machine
# that alone takes tens of seconds (36 s measured with both cores saturated).
pytestmark = pytest.mark.timeout(300)
_COMPILE_SECS = 240


def test_a_begin_queued_behind_folds_of_another_round_stays_ahead_of_its_own() -> None:
    notified = threading.Event()
    # warm=True: the worker compiles its kernels first, so every job below is queued
    # before it takes any, in this order (the interleaving of two concurrent runs).
    worker = FoldWorker(notified.set, warm=True)
    try:
        ref = {"w": np.zeros(4, np.float32)}
        spec_a, spec_b = (
            AggregateSpec(round_id="a", weight_key=""),
            AggregateSpec(round_id="b", weight_key=""),
        )
        worker.submit("begin", "a", spec_a, ref, 2)
        worker.submit("fold", "a", "a1", 1, {"w": np.ones(4, np.float32)}, 1.0, {})
        worker.submit("fold", "a", "a2", 2, {"w": np.ones(4, np.float32) * 3}, 1.0, {})
        worker.submit("begin", "b", spec_b, ref, 2)
        worker.submit("fold", "b", "b1", 1, {"w": np.ones(4, np.float32) * 10}, 1.0, {})
        worker.submit("fold", "b", "b2", 2, {"w": np.ones(4, np.float32) * 20}, 1.0, {})
        worker.submit("finish", "a", None)
        worker.submit("finish", "b", None)
        finished: dict[str, Any] = {}
        problems = []
        while len(finished) < 2:
            outcome = worker.done.get(timeout=_COMPILE_SECS)
            if outcome[0] == "folded":
                problems.append(outcome[4])
            elif outcome[0] == "finished":
                finished[outcome[1]] = outcome[2]
        assert problems == [None] * 4
        np.testing.assert_array_equal(finished["a"]["w"], np.full(4, 2.0, np.float32))
        np.testing.assert_array_equal(finished["b"]["w"], np.full(4, 15.0, np.float32))
        assert notified.wait(_COMPILE_SECS)  # the IO thread would have been told
    except queue.Empty:
        pytest.fail("the fold worker did not finish both rounds")
    finally:
        worker.close()


def test_importing_the_link_loads_no_kernels() -> None:
    # Every ServerApp the exec service starts runs a module of fedzero.link.exec, so it
    # imports the link package: the JIT (seconds to import) belongs to the fold worker.
    probe = "import sys, fedzero.link.exec; print('numba' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("method", ["median", "trimmed_mean", "krum", "multikrum"])
def test_clip_norm_is_refused_with_weight_blind_methods(method: str) -> None:
    """Clipping folds the pushed model in as a weighted term: only a weighted mean allows it."""
    with pytest.raises(DeserializationError, match="clip_norm works with method fedavg only"):
        AggregateSpec.from_wire({"round_id": "r", "method": method, "clip_norm": 1.0})
    assert AggregateSpec.from_wire({"round_id": "r", "method": "fedavg", "clip_norm": 1.0})
