"""Every kernel against its NumPy reference in naive.py, on Hypothesis-generated inputs."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedzero.aggregation import kernels as agg
from fedzero.aggregation.kernels import NETWORK_MAX_CLIENTS

from . import naive
from .strategies import ACC_DTYPES, stacks

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _eps(dtype: Any) -> float:
    return float(np.finfo(dtype).eps)


@SETTINGS
@given(stack=stacks(finite=False), acc_dtype=st.sampled_from(ACC_DTYPES), w=st.floats(0.01, 100))
def test_fold_equals_reference(threads: int, stack: np.ndarray, acc_dtype: Any, w: float) -> None:
    acc = np.zeros(stack.shape[1:], acc_dtype)
    ref = acc.copy()
    for x in stack:
        agg.weighted_fold(acc, x, w)
        ref = naive.fold(ref, x, w)
    np.testing.assert_array_equal(acc, ref)


@SETTINGS
@given(stack=stacks(finite=False), acc_dtype=st.sampled_from(ACC_DTYPES), data=st.data())
def test_fold_many_is_bit_identical_to_single_folds(
    threads: int, stack: np.ndarray, acc_dtype: Any, data: st.DataObject
) -> None:
    weights = data.draw(st.lists(st.floats(0.01, 1e4), min_size=len(stack), max_size=len(stack)))
    start = data.draw(st.sampled_from([0.0, -0.0, 1.5]))
    one = np.full(stack.shape[1:], start, acc_dtype)
    many = one.copy()
    for x, w in zip(stack, weights, strict=True):
        agg.weighted_fold(one, x, w)
    agg.weighted_fold_many(many, list(stack), weights)
    np.testing.assert_array_equal(many, one)
    assert np.array_equal(np.signbit(many), np.signbit(one))


@SETTINGS
@given(stack=stacks(finite=False, max_k=1))
def test_all_finite(threads: int, stack: np.ndarray) -> None:
    x = stack[0]
    assert agg.all_finite(x) == bool(np.isfinite(x.astype(np.float64)).all())


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_half_widening_is_exact_for_every_bit_pattern(dtype: Any) -> None:
    x = np.arange(65536, dtype=np.uint16).view(dtype)
    acc = np.full(x.shape, -0.0, np.float32)  # -0.0 + v == v for every v, signed zeros too
    agg.weighted_fold(acc, x, 1.0)
    ref = x.astype(np.float32)
    np.testing.assert_array_equal(acc, ref)
    finite = np.isfinite(ref)
    assert np.array_equal(np.signbit(acc[finite]), np.signbit(ref[finite]))


def _trim_tolerance(stack: np.ndarray, beta: float, acc_dtype: Any) -> np.ndarray:
    k = stack.shape[0]
    cut = int(beta * k)
    mid = np.sort(naive.widen(stack, acc_dtype).astype(np.float64), axis=0)[cut : k - cut]
    scale = np.abs(mid).sum(axis=0) / (k - 2 * cut)
    return 4 * k * _eps(acc_dtype) * scale + k * float(np.finfo(acc_dtype).smallest_subnormal)


@SETTINGS
@given(
    stack=stacks(max_k=9, max_abs=1e30),
    beta=st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.34, 0.49]),
    acc_dtype=st.sampled_from(ACC_DTYPES),
)
def test_trimmed_mean_equals_sort_and_slice(
    threads: int, stack: np.ndarray, beta: float, acc_dtype: Any
) -> None:
    got = agg.trimmed_mean(stack, beta, dtype=acc_dtype)
    ref = naive.trimmed_mean(stack, beta, acc_dtype)
    assert got.dtype == acc_dtype
    assert np.all(np.abs(got - ref) <= _trim_tolerance(stack, beta, acc_dtype))


def test_trimmed_mean_matches_scipy() -> None:
    from scipy.stats import trim_mean

    rng = np.random.default_rng(1)
    stack = rng.standard_normal((16, 1000))
    for beta in (0.0, 1 / 16, 0.2, 0.45):
        np.testing.assert_allclose(
            agg.trimmed_mean(stack, beta), trim_mean(stack, beta, axis=0), rtol=1e-13, atol=1e-15
        )


def test_trimmed_mean_is_not_destroyed_by_huge_outliers() -> None:
    honest = np.array([[1.0], [2.0], [3.0]], np.float32)
    stack = np.concatenate(
        [np.array([[3e38]], np.float32), honest, np.array([[-3e38]], np.float32)]
    )
    assert agg.trimmed_mean(stack, 0.2)[0] == 2.0  # sum-minus-extremes would give 0 or inf


def test_trimmed_state_serves_smaller_cuts() -> None:
    rng = np.random.default_rng(2)
    stack = rng.standard_normal((7, 50)).astype(np.float32)
    state = agg.TrimmedMeanState(50, 3, np.float64)
    from numba import typed

    for x in stack:  # one at a time: the fill phase, then the fold phase
        state.fold_views(typed.List([x.reshape(-1)]), 0)
    for cut in range(4):
        ref = np.sort(stack.astype(np.float64), axis=0)[cut : 7 - cut].mean(axis=0)
        np.testing.assert_allclose(state.result(cut), ref, rtol=1e-12)
    with pytest.raises(ValueError, match="cut must be"):
        state.result(4)


@SETTINGS
@given(stack=stacks(finite=False, max_k=9), acc_dtype=st.sampled_from(ACC_DTYPES))
def test_median_equals_numpy(threads: int, stack: np.ndarray, acc_dtype: Any) -> None:
    got = agg.coordinate_median(stack, dtype=acc_dtype)
    np.testing.assert_array_equal(got, naive.median(stack, acc_dtype))


@pytest.mark.parametrize("k", [NETWORK_MAX_CLIENTS, NETWORK_MAX_CLIENTS + 1, 100])
def test_median_many_clients_with_ties(k: int) -> None:
    rng = np.random.default_rng(k)
    stack = rng.integers(-3, 4, (k, 300)).astype(np.float32)
    stack[:, 0] = np.nan
    stack[1, 1] = np.inf
    got = agg.coordinate_median(stack)
    np.testing.assert_array_equal(got, naive.median(stack, np.float32))


@SETTINGS
@given(stack=stacks(min_k=1, max_k=6, max_abs=1e15))
def test_pairwise_distances(threads: int, stack: np.ndarray) -> None:
    got = agg.pairwise_sq_distances(list(stack))
    ref = naive.sq_distances(stack)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-300)
    assert np.array_equal(got, got.T)


@given(
    dist=st.integers(1, 8).flatmap(
        lambda n: st.lists(st.floats(0, 1e6), min_size=n * n, max_size=n * n)
    ),
    f=st.integers(0, 3),
)
@settings(max_examples=60, deadline=None)
def test_krum_scores_match_flower(dist: list[float], f: int) -> None:
    n = round(len(dist) ** 0.5)
    d = np.array(dist).reshape(n, n)
    d = np.triu(d, 1) + np.triu(d, 1).T
    np.testing.assert_allclose(agg.krum_scores(d, f), naive.krum_scores(d, f), rtol=1e-12)
    best = agg.krum_select(d, f, n)
    assert sorted(best) == list(range(n))


def test_l2_norm_and_clipping() -> None:
    x = np.array([3.0, 4.0], np.float32)
    assert agg.l2_norm(x) == 5.0
    assert agg.l2_norm([x, x]) == pytest.approx(50**0.5)
    np.testing.assert_allclose(agg.clip_by_norm(x, 1.0), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(agg.clip_by_norm(x, 10.0), x)
    assert agg.clip_factor(0.0, 1.0) == 1.0
    with pytest.raises(ValueError, match="max_norm"):
        agg.clip_factor(1.0, 0.0)


def test_results_do_not_depend_on_thread_count() -> None:
    rng = np.random.default_rng(3)
    stack = rng.standard_normal((5, 70_001)).astype(np.float32)
    results = []
    for n in (1, 2):
        agg.set_num_threads(n)
        acc = np.zeros(stack.shape[1], np.float32)
        agg.weighted_fold_many(acc, list(stack), [1.0] * 5)
        results.append((acc, agg.l2_norm(stack[0]), agg.trimmed_mean(stack, 0.2)))
    agg.set_num_threads(None)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
    np.testing.assert_array_equal(results[0][2], results[1][2])


def test_wrappers_reject_bad_input_with_advice() -> None:
    acc = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match=r"astype"):
        agg.weighted_fold(acc, np.zeros(4, np.int32), 1.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        agg.weighted_fold(acc, np.zeros(8, np.float32)[::2], 1.0)
    with pytest.raises(ValueError, match="shape"):
        agg.weighted_fold(acc, np.zeros(5, np.float32), 1.0)
    with pytest.raises(ValueError, match="finite"):
        agg.weighted_fold(acc, np.zeros(4, np.float32), float("nan"))
    with pytest.raises(TypeError, match="float32 or float64"):
        agg.weighted_fold(np.zeros(4, np.float16), np.zeros(4, np.float32), 1.0)
    with pytest.raises(TypeError, match="one dtype"):
        agg.weighted_fold_many(acc, [np.zeros(4, np.float32), np.zeros(4, np.float64)], [1, 1])
    with pytest.raises(ValueError, match="one weight per array"):
        agg.weighted_fold_many(acc, [np.zeros(4, np.float32)], [1, 1])
    with pytest.raises(ValueError, match="beta"):
        agg.trimmed_mean([np.zeros(4, np.float32)], 0.5)
    with pytest.raises(ValueError, match="empty"):
        agg.coordinate_median([])
    with pytest.raises(ValueError, match="NUMBA_NUM_THREADS"):
        agg.set_num_threads(0)


@pytest.mark.parametrize("clients", [1, 3, NETWORK_MAX_CLIENTS + 1])
def test_median_of_an_odd_count_is_the_middle_value_even_near_overflow(clients: int) -> None:
    # Found by Hypothesis in CI: averaging the middle value with itself overflowed to inf.
    huge = np.finfo(np.float64).max / 2 * 1.0000001
    stack = np.full((clients, 3), huge)
    np.testing.assert_array_equal(
        agg.coordinate_median(stack, dtype=np.float64), np.median(stack, axis=0)
    )
