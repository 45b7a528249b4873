"""Kernels compiled on demand: a round's variants in the background, NumPy stand-ins meanwhile."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedzero.aggregation import kernels as agg

from .strategies import ACC_DTYPES, stacks

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _fedavg(stack: np.ndarray, weights: list[float], acc_dtype: Any) -> dict[str, np.ndarray]:
    acc = agg.WeightedMeanAccumulator(accumulator_dtype=acc_dtype, reject_non_finite=False)
    acc.begin({"w": stack[0]})
    acc.fold_many([({"w": x}, w) for x, w in zip(stack[:-1], weights, strict=False)])
    acc.fold({"w": stack[-1]}, weights[-1])
    return acc.finish()


@SETTINGS
@given(
    stack=stacks(finite=False, min_k=1, max_k=5, max_p=40),
    acc_dtype=st.sampled_from(ACC_DTYPES),
    weights=st.lists(st.floats(0.01, 1e4), min_size=5, max_size=5),
)
def test_numpy_stand_ins_give_the_kernels_bits(
    threads: int, stack: np.ndarray, acc_dtype: Any, weights: list[float]
) -> None:
    """FedAvg while its kernels compile gives bit for bit what the kernels give."""
    weights = weights[: stack.shape[0]]
    with np.errstate(all="ignore"):
        by_kernel = _fedavg(stack, weights, acc_dtype)["w"]
        finite = [agg.all_finite(x) for x in stack]
        with agg.numpy_stand_ins(stack.dtype, acc_dtype):
            by_numpy = _fedavg(stack, weights, acc_dtype)["w"]
            assert [agg.all_finite(x) for x in stack] == finite
    assert by_numpy.dtype == by_kernel.dtype
    np.testing.assert_array_equal(by_numpy.view(np.uint8), by_kernel.view(np.uint8))


def test_prepare_compiles_a_rounds_variants_in_the_background() -> None:
    agg.prepare_kernels("multikrum", [np.float16], [np.float64])
    assert agg.wait_prepared(300.0)
    assert agg.prepare_kernels("multikrum", [np.float16], [np.float64]) == 0  # all ready
    assert agg.prepare_kernels("no-such-method", [np.float32], [np.float32]) == 0
    acc = agg.KrumAccumulator(num_malicious=0, num_to_keep=2, accumulator_dtype=np.float64)
    acc.begin({"w": np.zeros(3, np.float16)})
    for v in (1.0, 2.0, 9.0):
        acc.fold({"w": np.full(3, v, np.float16)}, 1.0)
    np.testing.assert_array_equal(acc.finish()["w"], np.full(3, 1.5, np.float16))
