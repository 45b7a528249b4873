"""Server optimizers: Flower's formulas, and bit for bit the Numba kernels they replaced.

The optimizers run in the ServerApp process in NumPy (no Numba there). The
kernels they replaced live on in ``server_opt_kernels.py`` as the oracle:
same models, moments and outputs, on Hypothesis-generated arrays of every
dtype with NaN, infinities, subnormals and signed zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedzero import aggregation as agg

from . import naive
from . import server_opt_kernels as oracle
from .strategies import stacks

KINDS: dict[str, tuple[Any, int]] = {
    "adam": (agg.ServerAdam, oracle.OPT_ADAM),
    "yogi": (agg.ServerYogi, oracle.OPT_YOGI),
    "adagrad": (agg.ServerAdagrad, oracle.OPT_ADAGRAD),
}

unit = st.floats(0.0, 0.999)


def _work(x: np.ndarray) -> np.ndarray:
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    return np.ascontiguousarray(x, dtype).reshape(-1)


def _assert_same_bits(got: np.ndarray, want: np.ndarray) -> None:
    """Equal dtype, shape and bits; any NaN matches any NaN (payloads may differ)."""
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    g = got.reshape(-1).astype(np.float64)
    w = want.reshape(-1).astype(np.float64)
    nan = np.isnan(w)
    np.testing.assert_array_equal(np.isnan(g), nan)
    np.testing.assert_array_equal(g[~nan], w[~nan])
    np.testing.assert_array_equal(np.signbit(g[~nan]), np.signbit(w[~nan]))


def _eta(opt: Any, kind: str, server_round: int) -> float:
    if kind != "adam":
        return float(opt.eta)
    t = server_round + 1.0
    return float(opt.eta * np.sqrt(1 - opt.beta_2**t) / (1 - opt.beta_1**t))


def _check_fedopt(kind: str, models: list[np.ndarray], hyper: dict[str, float]) -> None:
    """Round r steps from the last result towards ``models[r]``; compare every round."""
    cls, code = KINDS[kind]
    opt = cls(**hyper)
    current = models[0]
    m = np.zeros_like(_work(current))
    v = np.zeros_like(m)
    for rnd, target in enumerate(models[1:], start=1):
        out = np.empty_like(m)
        b1, b2, tau = opt.beta_1, opt.beta_2, opt.tau
        args = (_work(current), _work(target), m, v, out, b1, b2, _eta(opt, kind, rnd), tau, code)
        oracle.fedopt_step(*args)
        want = out.reshape(current.shape).astype(current.dtype, copy=False)
        current = opt.step({"w": current}, {"w": target}, rnd)["w"]
        _assert_same_bits(current, want)
        _assert_same_bits(opt.m_t["w"], m)
        _assert_same_bits(opt.v_t["w"], v)


def _check_momentum(models: list[np.ndarray], lr: float, beta: float) -> None:
    opt = agg.ServerMomentum(server_learning_rate=lr, server_momentum=beta)
    current = models[0]
    mom = np.zeros_like(_work(current))
    for rnd, target in enumerate(models[1:], start=1):
        out = np.empty_like(mom)
        oracle.momentum_step(_work(current), _work(target), mom, out, lr, beta, rnd == 1)
        want = out.reshape(current.shape).astype(current.dtype, copy=False)
        current = opt.step({"w": current}, {"w": target}, rnd)["w"]
        _assert_same_bits(current, want)
        _assert_same_bits(opt.momentum_vector["w"], mom)


@settings(max_examples=80, deadline=None)
@given(
    stack=stacks(finite=False, min_k=4, max_k=4),
    kind=st.sampled_from(sorted(KINDS)),
    b1=unit,
    b2=unit,
    eta=st.floats(1e-4, 10.0),
    tau=st.floats(1e-12, 1.0),
)
def test_fedopt_is_the_old_kernel_bit_for_bit(
    stack: np.ndarray, kind: str, b1: float, b2: float, eta: float, tau: float
) -> None:
    hyper = {"beta_1": b1, "beta_2": b2, "eta": eta, "tau": tau}
    _check_fedopt(kind, list(stack), hyper)


@settings(max_examples=60, deadline=None)
@given(
    stack=stacks(finite=False, min_k=4, max_k=4),
    lr=st.floats(0.0, 4.0),
    beta=st.sampled_from([0.0, 0.5, 0.9]) | unit,
)
def test_momentum_is_the_old_kernel_bit_for_bit(stack: np.ndarray, lr: float, beta: float) -> None:
    _check_momentum(list(stack), lr, beta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_models_cross_chunk_boundaries(dtype: Any) -> None:
    rng = np.random.default_rng(8)
    size = 200_003  # several NumPy chunks and Numba blocks, with a ragged tail
    models = [(rng.standard_normal(size) * 10 ** rng.integers(-3, 3)).astype(dtype)]
    models += [(models[0] + rng.standard_normal(size) * 0.1).astype(dtype) for _ in range(3)]
    models[2][::997] = 0.0
    models[3][5] = np.nan
    for kind in sorted(KINDS):
        _check_fedopt(kind, models, {"beta_1": 0.9, "beta_2": 0.99, "eta": 0.05, "tau": 1e-3})
    _check_momentum(models, 0.7, 0.9)


@pytest.mark.parametrize("kind", ["adam", "yogi", "adagrad"])
def test_server_optimizers_match_flower(kind: str) -> None:
    rng = np.random.default_rng(4)
    x = {"w": rng.standard_normal(100)}
    opt = KINDS[kind][0]()
    m = np.zeros(100)
    v = np.zeros(100)
    for rnd in (1, 2, 3):
        aggregated = {"w": x["w"] + rng.standard_normal(100) * 0.1}
        ref, m, v = naive.fedopt(
            kind,
            x["w"],
            aggregated["w"],
            m,
            v,
            eta=_eta(opt, kind, rnd),
            b1=opt.beta_1,
            b2=opt.beta_2,
            tau=opt.tau,
        )
        x = opt.step(x, aggregated, rnd)
        np.testing.assert_allclose(x["w"], ref, rtol=1e-12)


def test_fedavgm_matches_flower() -> None:
    opt = agg.ServerMomentum(server_learning_rate=0.5, server_momentum=0.9)
    x = {"w": np.ones(4, np.float32)}
    mom = None
    ref = x["w"].astype(np.float64)
    for target in (0.0, 2.0):
        aggregated = {"w": np.full(4, target, np.float32)}
        g = ref - target
        mom = g if mom is None else 0.9 * mom + g
        ref = ref - 0.5 * mom
        x = opt.step(x, aggregated)
        assert x["w"].dtype == np.float32
        np.testing.assert_allclose(x["w"], ref, rtol=1e-6)


def test_mismatched_models_are_refused() -> None:
    opt = agg.ServerAdam()
    w = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="different names"):
        opt.step({"w": w}, {"v": w})
    with pytest.raises(ValueError, match="shape"):
        opt.step({"w": w}, {"w": np.zeros(4, np.float32)})
