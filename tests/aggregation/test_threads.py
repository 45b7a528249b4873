"""Folds launched from several Python threads at once give exact results.

Numba's workqueue threading layer aborts the process on concurrent parallel
launches; the wrappers serialize launches unless the layer is thread-safe. The
subprocess test forces workqueue to prove the guard works there too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from fedzero.aggregation import kernels as agg

SCRIPT = textwrap.dedent(
    """
    import threading
    import numpy as np
    import numba
    from fedzero.aggregation import kernels as agg

    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(200_003).astype(np.float32) for _ in range(6)]
    expected = np.zeros(200_003, np.float32)
    for x in xs:
        agg.weighted_fold(expected, x, 0.5)
    results = {}

    def work(tid):
        acc = np.zeros(200_003, np.float32)
        for _ in range(20):
            acc[:] = 0
            for x in xs:
                agg.weighted_fold(acc, x, 0.5)
            assert agg.all_finite(acc)
        results[tid] = acc

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for acc in results.values():
        assert np.array_equal(acc, expected)
    print("layer", numba.threading_layer(), "ok", len(results))
    """
)


def _fold_all(xs: list[np.ndarray], acc: np.ndarray) -> None:
    for x in xs:
        agg.weighted_fold(acc, x, 0.25)
    agg.weighted_fold_many(acc, xs, [0.5] * len(xs))


@pytest.mark.timeout(60)
def test_concurrent_folds_from_two_threads_are_exact() -> None:
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal(300_007).astype(np.float32) for _ in range(4)]
    expected = np.zeros(300_007, np.float32)
    _fold_all(xs, expected)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(15):
                acc = np.zeros(300_007, np.float32)
                _fold_all(xs, acc)
                np.testing.assert_array_equal(acc, expected)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(2)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=50)
    assert not errors, errors
    assert not any(t.is_alive() for t in workers)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_concurrent_folds_in_a_fresh_process(layer: str) -> None:
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok 2" in proc.stdout
    if layer == "workqueue":
        assert "layer workqueue" in proc.stdout
