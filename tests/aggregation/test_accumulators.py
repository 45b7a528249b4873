"""Streaming accumulators: results equal the references over accepted updates only."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedzero.aggregation import kernels as agg
from fedzero.aggregation import weighted_metrics_mean
from fedzero.core import FedzeroError

from . import naive

REF = {"a": np.zeros((3, 4), np.float32), "b": np.zeros(5, ml_dtypes.bfloat16)}


def _update(rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
    return {
        "a": (rng.standard_normal((3, 4)) * scale).astype(np.float32),
        "b": (rng.standard_normal(5) * scale).astype(ml_dtypes.bfloat16),
    }


def _bad_updates(good: dict[str, np.ndarray]) -> list[tuple[dict[str, Any], float, str]]:
    nan = {**good, "a": good["a"].copy()}
    nan["a"][1, 2] = np.nan
    inf = {**good, "b": good["b"].copy()}
    inf["b"][0] = np.inf
    return [
        ({"a": good["a"]}, 1.0, "missing"),
        ({**good, "c": good["a"]}, 1.0, "unexpected"),
        ({**good, "a": good["a"].astype(np.float64)}, 1.0, "dtype"),
        ({**good, "a": good["a"].reshape(4, 3)}, 1.0, "shape"),
        ({**good, "a": np.asfortranarray(good["a"])}, 1.0, "contiguous"),
        ({**good, "a": "not an array"}, 1.0, "not an array"),
        (nan, 1.0, "NaN"),
        (inf, 1.0, "NaN or infinity"),
        (good, 0.0, "weight"),
        (good, float("inf"), "weight"),
        (good, -1.0, "weight"),
    ]


def _accumulators() -> list[tuple[agg.Accumulator, Any]]:
    """(accumulator, reference over a list of (update, weight)) pairs."""

    def mean(items: list[tuple[dict[str, np.ndarray], float]], name: str) -> np.ndarray:
        ws = np.array([w for _, w in items])
        stack = np.stack([naive.widen(u[name], np.float64) for u, _ in items])
        return np.tensordot(ws, stack, axes=1) / ws.sum()

    def trimmed(items: list[tuple[dict[str, np.ndarray], float]], name: str) -> np.ndarray:
        return naive.trimmed_mean(np.stack([u[name] for u, _ in items]), 0.2, np.float32)

    def median(items: list[tuple[dict[str, np.ndarray], float]], name: str) -> np.ndarray:
        return naive.median(np.stack([u[name] for u, _ in items]), np.float32)

    return [
        (agg.WeightedMeanAccumulator(), mean),
        (agg.TrimmedMeanAccumulator(0.2, max_clients=10), trimmed),
        (agg.MedianAccumulator(), median),
    ]


@pytest.mark.parametrize("index", range(3), ids=["mean", "trimmed", "median"])
def test_rejected_updates_leave_the_accumulator_unchanged(index: int) -> None:
    acc, reference = _accumulators()[index]
    rng = np.random.default_rng(index)
    acc.begin(REF)
    accepted = []
    for j in range(6):
        good = _update(rng)
        weight = float(j + 1)
        for bad, bad_weight, reason in _bad_updates(good):
            with pytest.raises(agg.UpdateRejected, match=reason):
                acc.fold(bad, bad_weight)
        with pytest.raises(agg.UpdateRejected, match="update 1"):
            acc.fold_many([(good, weight), (_bad_updates(good)[0][0], 1.0)])
        acc.fold(good, weight)
        accepted.append((good, weight))
    out = acc.finish()
    assert list(out) == ["a", "b"]
    for name, ref in REF.items():
        assert out[name].dtype == ref.dtype
        assert out[name].shape == ref.shape
        want = reference(accepted, name).astype(ref.dtype)
        np.testing.assert_allclose(
            out[name].astype(np.float64),
            want.astype(np.float64),
            rtol=1e-2 if name == "b" else 1e-6,
        )


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 12), batch=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_weighted_mean_batched_folds(k: int, batch: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    updates = [
        ({"w": rng.standard_normal(37).astype(np.float32)}, float(rng.integers(1, 100)))
        for _ in range(k)
    ]
    one = agg.WeightedMeanAccumulator(accumulator_dtype=np.float64)
    many = agg.WeightedMeanAccumulator(accumulator_dtype=np.float64)
    ref = {"w": np.zeros(37, np.float32)}
    one.begin(ref)
    many.begin(ref)
    for u, w in updates:
        one.fold(u, w)
    for start in range(0, k, batch):
        many.fold_many(updates[start : start + batch])
    assert one.count == many.count == k
    np.testing.assert_array_equal(one.finish()["w"], many.finish()["w"])
    ws = np.array([w for _, w in updates])
    expected = np.average(
        np.stack([u["w"] for u, _ in updates]).astype(np.float64), axis=0, weights=ws
    )
    np.testing.assert_allclose(one.finish()["w"], expected, rtol=1e-6, atol=1e-7)


def test_weighted_mean_clipping_scales_updates() -> None:
    acc = agg.WeightedMeanAccumulator(clip_norm=1.0)
    acc.begin({"w": np.zeros(2, np.float32)})
    acc.fold({"w": np.array([3.0, 4.0], np.float32)}, 1.0)  # clipped to norm 1
    acc.fold({"w": np.array([0.3, 0.4], np.float32)}, 1.0)  # left alone
    np.testing.assert_allclose(acc.finish()["w"], [0.45, 0.6], rtol=1e-6)


def test_trimmed_mean_capacity_and_fewer_clients() -> None:
    acc = agg.TrimmedMeanAccumulator(0.25, max_clients=8)
    acc.begin({"w": np.zeros(3, np.float64)})
    values = [5.0, -100.0, 1.0, 2.0, 100.0]  # K=5: int(0.25*5)=1 cut per side
    for v in values:
        acc.fold({"w": np.full(3, v)}, 1.0)
    np.testing.assert_array_equal(acc.finish()["w"], np.full(3, (5.0 + 1.0 + 2.0) / 3))
    for v in (0.0, 0.0, 0.0):
        acc.fold({"w": np.full(3, v)}, 1.0)
    with pytest.raises(agg.UpdateRejected, match="sized for 8"):
        acc.fold({"w": np.zeros(3)}, 1.0)
    assert acc.count == 8


@pytest.mark.parametrize("num_to_keep", [0, 2])
def test_krum_picks_the_honest_cluster(num_to_keep: int) -> None:
    rng = np.random.default_rng(6)
    acc = agg.KrumAccumulator(num_malicious=2, num_to_keep=num_to_keep)
    acc.begin({"w": np.zeros(50, np.float32), "v": np.zeros(3, np.float16)})
    honest = []
    for j in range(7):
        scale = 100.0 if j in (2, 5) else 1.0
        u = {
            "w": (1 + 0.01 * rng.standard_normal(50) * scale).astype(np.float32),
            "v": np.ones(3, np.float16),
        }
        if scale == 1.0:
            honest.append(u)
        acc.fold(u, 1.0 + j)
    stack = np.stack([np.concatenate([u["w"], u["v"].astype(np.float32)]) for u in [*honest]])
    dist = acc.distances()
    assert dist.shape == (7, 7)
    out = acc.finish()
    assert np.abs(out["w"] - 1).max() < 0.1
    assert out["v"].dtype == np.float16
    assert stack.shape[0] == 5


def test_krum_distances_match_reference() -> None:
    rng = np.random.default_rng(7)
    acc = agg.KrumAccumulator(num_malicious=1)
    acc.begin({"w": np.zeros(10, np.float32), "v": np.zeros(4, np.float64)})
    ups = [
        {"w": rng.standard_normal(10).astype(np.float32), "v": rng.standard_normal(4)}
        for _ in range(5)
    ]
    acc.fold_many([(u, 1.0) for u in ups[:3]])
    for u in ups[3:]:
        acc.fold(u, 1.0)
    flat = np.stack([np.concatenate([u["w"].astype(np.float64), u["v"]]) for u in ups])
    np.testing.assert_allclose(acc.distances(), naive.sq_distances(flat), rtol=1e-12)
    best = int(np.argmin(naive.krum_scores(naive.sq_distances(flat), 1)))
    np.testing.assert_array_equal(acc.finish()["w"], ups[best]["w"])


def test_life_cycle_errors() -> None:
    acc = agg.WeightedMeanAccumulator()
    with pytest.raises(agg.AccumulatorStateError, match="begin"):
        acc.fold({"w": np.zeros(1, np.float32)}, 1.0)
    acc.begin({"w": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="no update"):
        acc.finish()
    acc.fold({"w": np.ones(1, np.float32)}, 1.0)
    acc.finish()
    with pytest.raises(agg.AccumulatorStateError, match="finish"):
        acc.fold({"w": np.ones(1, np.float32)}, 1.0)


def test_errors_are_fedzero_errors() -> None:
    acc = agg.MedianAccumulator()
    with pytest.raises(FedzeroError):
        acc.fold({"w": np.zeros(1, np.float32)}, 1.0)
    acc.begin({"w": np.zeros(1, np.float32)})
    with pytest.raises(FedzeroError) as info:
        acc.fold({"w": np.zeros(2, np.float32)}, 1.0)
    assert isinstance(info.value, agg.UpdateRejected)
    assert isinstance(info.value, ValueError)  # for callers that catch bad input generally
    assert issubclass(agg.AccumulatorStateError, RuntimeError)
    with pytest.raises(TypeError, match="float dtype"):
        acc.begin({"w": np.zeros(1, np.int64)})
    with pytest.raises(TypeError, match="accumulator_dtype"):
        agg.MedianAccumulator(accumulator_dtype=np.float16)


def test_weighted_metrics_mean() -> None:
    records = [
        ({"acc": 0.5, "loss": [1.0, 2.0], "n": 3}, 10),
        ({"acc": 1.0, "loss": [3.0, 4.0]}, 30),
    ]
    out = weighted_metrics_mean(records)
    assert out["acc"] == pytest.approx(0.875)
    assert out["loss"] == pytest.approx([2.5, 3.5])
    assert out["n"] == 3.0
    with pytest.raises(ValueError, match="lengths"):
        weighted_metrics_mean([({"x": [1.0]}, 1), ({"x": [1.0, 2.0]}, 1)])
    with pytest.raises(TypeError, match="int, a float"):
        weighted_metrics_mean([({"x": "high"}, 1)])  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="zero total"):
        weighted_metrics_mean([({"x": 1.0}, 0)])
