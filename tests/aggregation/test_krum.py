"""Krum distances by the Gram identity against the direct NumPy formula, and tie-breaking."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from fedzero.aggregation import kernels as agg

from . import naive
from .strategies import INPUT_DTYPES, stacks

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
RTOL = 1e-9  # every distance is guaranteed within this (else recomputed directly)


def _close(got: np.ndarray, ref: np.ndarray) -> None:
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=1e-300)
    assert np.array_equal(got, got.T)
    assert not np.diag(got).any()


@SETTINGS
@given(
    stack=stacks(min_k=1, max_k=11, max_p=1500, max_abs=1e15),
    offset=st.sampled_from([0.0, 1.0, 1e3, 1e6]),
)
def test_distances_of_near_equal_updates(threads: int, stack: np.ndarray, offset: float) -> None:
    """Clients a few ulps apart far from the origin: the case that cancels in |a|^2 - 2ab + |b|^2."""
    if stack.dtype == np.float16:
        offset = min(offset, 1e3)
    centre = stack.dtype.type(offset)
    ulps = np.round(stack.astype(np.float64) / 1e15 * 4)  # -4..4 steps of one ulp
    ulp = np.spacing(centre) if offset else stack.dtype.type(1e-3)
    near = (centre.astype(np.float64) + ulps * float(ulp)).astype(stack.dtype)
    for s in (stack, near):
        _close(agg.pairwise_sq_distances(list(s)), naive.sq_distances(s))


@pytest.mark.parametrize("dtype", INPUT_DTYPES)
def test_centre_far_from_a_tight_cluster_falls_back_to_the_direct_formula(dtype: Any) -> None:
    """Two outliers first (they set the centre), four clients 1e-3 apart: recomputed pairs."""
    rng = np.random.default_rng(4)
    stack = np.zeros((6, 20_000), np.float32)
    stack[:2] = 3e4
    stack[2:] = 1 + rng.standard_normal((4, 20_000)).astype(np.float32) * 1e-3
    stack[3] = stack[2]
    stack[3, 7] += 1e-3  # two clients one coordinate apart
    stack = stack.astype(dtype)
    with capture_logs() as logs:
        got = agg.pairwise_sq_distances(list(stack))
    _close(got, naive.sq_distances(stack))
    redone = [e for e in logs if e["event"] == "krum_distances_recomputed"]
    assert redone
    assert redone[0]["pairs"] >= 1


def test_distances_do_not_depend_on_thread_count_or_blocking() -> None:
    rng = np.random.default_rng(5)
    stack = rng.standard_normal((7, 300_001)).astype(np.float32)
    results = []
    for n in (1, 2):
        agg.set_num_threads(n)
        results.append(agg.pairwise_sq_distances(list(stack)))
    agg.set_num_threads(None)
    np.testing.assert_array_equal(results[0], results[1])
    _close(results[0], naive.sq_distances(stack))


def test_non_finite_values_give_the_direct_formulas_result() -> None:
    stack = np.ones((4, 9), np.float32)
    stack[1, 3] = np.inf
    stack[2, 4] = np.nan
    with np.errstate(invalid="ignore"):
        ref = naive.sq_distances(stack)
        got = agg.pairwise_sq_distances(list(stack))
    np.testing.assert_array_equal(
        np.isnan(got[~np.eye(4, dtype=bool)]), np.isnan(ref[~np.eye(4, dtype=bool)])
    )
    np.testing.assert_array_equal(got[0, 3], ref[0, 3])
    assert got[0, 1] == np.inf


@pytest.mark.parametrize("order", [(0, 1, 2), (1, 0, 2), (2, 1, 0)])
def test_krum_breaks_equal_scores_by_key_not_arrival(order: tuple[int, ...]) -> None:
    """Clients 0 and 1 tie (score 1 each); the lower key wins whatever the arrival order."""
    values, keys = [0.0, 1.0, 3.0], [9, 2, 5]
    acc = agg.KrumAccumulator(num_malicious=0)
    acc.begin({"w": np.zeros(1, np.float32)})
    for j in order:
        acc.fold({"w": np.full(1, values[j], np.float32)}, 1.0, key=keys[j])
    assert acc.finish()["w"][0] == 1.0
    acc.begin({"w": np.zeros(1, np.float32)})
    acc.fold_many(
        [({"w": np.full(1, values[j], np.float32)}, 1.0) for j in order],
        keys=[keys[j] for j in order],
    )
    assert acc.finish()["w"][0] == 1.0


def test_krum_without_keys_takes_the_first_arrival_and_checks_key_counts() -> None:
    acc = agg.KrumAccumulator(num_malicious=0)
    acc.begin({"w": np.zeros(1, np.float32)})
    acc.fold({"w": np.full(1, 1.0, np.float32)}, 1.0)
    acc.fold({"w": np.full(1, 0.0, np.float32)}, 1.0)
    acc.fold({"w": np.full(1, 3.0, np.float32)}, 1.0)
    assert acc.finish()["w"][0] == 1.0
    with pytest.raises(ValueError, match="one key per update"):
        acc.fold_many([({"w": np.zeros(1, np.float32)}, 1.0)], keys=[1, 2])
    dist = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert agg.krum_select(dist, 0, 1, keys=[7, 3]) == [1]
    with pytest.raises(ValueError, match="one key per client"):
        agg.krum_select(dist, 0, 1, keys=[1])
