"""Flower 1.42's strategy test cases, re-stated as data (issue 13, item 6).

Each :class:`Case` is one numerical test of Flower's, with the file and test
it comes from (paths in Flower's repository, ``framework/py/flwr/``). Its
``replies`` are what the nodes answer (arrays by Flower's ``ArrayRecord([...])``
names ``"0"``, ``"1"``, ... and the reply's metrics), ``initial`` is the model
the strategy starts from (what Flower's test set as ``current_arrays``, or
zeros of the replies' shapes when the strategy does not read it), and
``expected`` is Flower's expected result.

Flower's tests that check no number (error cases of ``_compute_deltat_and_mt``,
``validate_message_reply_consistency``, ``config_to_str``) and the tests of
private helpers alone (``aggregate_n_closest_weights``, the legacy
``_check_weights_equality`` and ``_find_reference_weights``) are not here:
fedzero's path to them is a whole strategy, covered by the figures in
``flower_1_42_figures.json`` (Bulyan, Krum, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from fedzero.aggregation import (
    FedAdagrad,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
)

Arrays = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Case:
    """One numerical case: the strategy, what the nodes reply, Flower's expected result."""

    source: str
    strategy: Callable[[], Any]
    replies: list[tuple[Arrays, dict[str, Any]]]
    expected: Arrays
    initial: Arrays | None = None
    rounds: int = 1
    decimal: int | None = None  # Flower's assert_almost_equal(decimal=...)
    rtol: float | None = None  # Flower's assert_allclose(rtol=...); None: float32/64 rounding
    expected_metrics: dict[str, Any] | None = None


def _one(values: list[float], dtype: Any = np.float64) -> Arrays:
    return {"0": np.array(values, dtype)}


def _n(k: int) -> dict[str, Any]:
    return {"num-examples": k}


_W00 = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
_W01 = np.array([7, 8, 9, 10], np.float32)
_W10 = np.array([[29, 23, 19], [17, 13, 11]], np.float32)
_W11 = np.array([7, 5, 3, 2], np.float32)
_FEDAVGM_REPLIES = [({"0": _W00, "1": _W01}, _n(1)), ({"0": _W10, "1": _W11}, _n(2))]
_FEDAVGM_EXPECTED = {"0": (_W00 * 1 + _W10 * 2) / 3, "1": (_W01 * 1 + _W11 * 2) / 3}
_FEDAVGM_INITIAL = {"0": np.zeros((2, 3), np.float32), "1": np.zeros(4, np.float32)}

_RNG = np.random.default_rng(42)  # Flower draws these with np.random.randn; fixed here
_RANDOM = [[_RNG.standard_normal((7, 3)) for _ in range(4)] for _ in range(3)]
_WEIGHTS = [0.25, 0.4, 0.35]
_LISTS = [_RNG.standard_normal(3).tolist() for _ in range(3)]
_SCALARS = [float(_RNG.standard_normal()) for _ in range(3)]


def _metrics_expected() -> dict[str, Any]:
    """Flower's test_metricrecords_aggregation: weighted means, the weight key dropped."""
    out: dict[str, Any] = {"a": 1.0, "b": 2.0}
    out["c"] = np.average(np.array(_LISTS), axis=0, weights=_WEIGHTS).tolist()
    return out


CASES: dict[str, Case] = {
    "fedmedian": Case(
        "serverapp/strategy/fedmedian_test.py::test_aggregate_fit",
        FedMedian,
        [
            (_one([1.0, 0.2, 0.5, 1.0]), _n(5)),
            (_one([0.2, 0.5, 1.0, 0.2]), _n(2)),
            (_one([0.5, 1.0, 0.2, 0.5]), _n(9)),
        ],
        _one([0.5, 0.5, 0.5, 0.5]),
    ),
    "fedtrimmedavg": Case(
        "serverapp/strategy/fedtrimmedavg_test.py::test_aggregate_fit",
        lambda: FedTrimmedAvg(beta=0.25),
        [
            (_one([0.5, 0.5, 0.5, 0.5]), _n(1)),
            (_one([1.0, 0.2, 0.5, 1.0]), _n(5)),
            (_one([0.2, 0.5, 1.0, 0.2]), _n(2)),
            (_one([0.5, 1.0, 0.2, 0.5]), _n(9)),
        ],
        _one([0.5, 0.5, 0.5, 0.5]),
    ),
    "fedtrimmedavg-scalar": Case(
        "serverapp/strategy/fedtrimmedavg_test.py::test_aggregate_fit_with_scalar_weights",
        lambda: FedTrimmedAvg(beta=0.25),
        [({"0": np.array(v)}, _n(1)) for v in (0.5, 1.0, 2.0, 100.0)],
        {"0": np.array(1.5)},
    ),
    "krum": Case(
        "serverapp/strategy/krum_test.py::test_aggregate_train_krum (and multikrum_test.py)",
        lambda: Krum(num_malicious_nodes=1),
        [(_one([v] * 4), _n(5)) for v in (0.2, 0.7, 1.0)],
        _one([0.7] * 4),
    ),
    "multikrum": Case(
        "serverapp/strategy/multikrum_test.py::test_aggregate_train_multikrum",
        lambda: MultiKrum(num_malicious_nodes=1, num_nodes_to_select=2),
        [(_one([v] * 4), _n(5)) for v in (0.2, 0.5, 1.0)],
        _one([0.35] * 4),
    ),
    "fedavgm-no-momentum": Case(
        "serverapp/strategy/fedavgm_test.py::test_aggregate_fit_using_near_one_server_lr_and_no_momentum",
        lambda: FedAvgM(server_learning_rate=1.0 + 1e-9),
        _FEDAVGM_REPLIES,
        _FEDAVGM_EXPECTED,
        initial=_FEDAVGM_INITIAL,
        decimal=5,
    ),
    "fedavgm-momentum": Case(
        "serverapp/strategy/fedavgm_test.py::test_aggregate_fit_server_learning_rate_and_momentum",
        lambda: FedAvgM(server_learning_rate=1.0 + 1e-9, server_momentum=1e-9),
        _FEDAVGM_REPLIES,
        _FEDAVGM_EXPECTED,
        initial=_FEDAVGM_INITIAL,
        rounds=2,
        decimal=5,
    ),
    "fedavgm-scalar": Case(
        "serverapp/strategy/fedavgm_test.py::test_aggregate_fit_with_scalar_weights",
        lambda: FedAvgM(server_learning_rate=1.0 + 1e-9),
        [({"0": np.array(1.0)}, _n(1)), ({"0": np.array(3.0)}, _n(2))],
        {"0": np.array(7.0 / 3.0)},
        initial={"0": np.array(0.0)},
        rtol=1e-6,  # Flower's: the learning rate is 1 + 1e-9
    ),
    "arrayrecords": Case(
        "serverapp/strategy/strategy_utils_test.py::test_arrayrecords_aggregation",
        lambda: FedAvg(weighted_by_key="weight"),
        [
            ({str(i): a for i, a in enumerate(arrays)}, {"weight": w})
            for arrays, w in zip(_RANDOM, _WEIGHTS, strict=True)
        ],
        {str(i): np.average([r[i] for r in _RANDOM], axis=0, weights=_WEIGHTS) for i in range(4)},
    ),
    "arrayrecords-ndim-zero": Case(
        "serverapp/strategy/strategy_utils_test.py::test_arrayrecords_aggregation_with_ndim_zero",
        lambda: FedAvg(weighted_by_key="weight"),
        [({"0": np.array(v)}, {"weight": w}) for v, w in zip(_SCALARS, _WEIGHTS, strict=True)],
        {"0": np.array(np.average(_SCALARS, weights=_WEIGHTS))},
    ),
    "metricrecords": Case(
        "serverapp/strategy/strategy_utils_test.py::test_metricrecords_aggregation",
        lambda: FedAvg(weighted_by_key="weight"),
        [
            (_one([1.0]), {"a": 1, "b": 2.0, "c": c, "weight": w})
            for c, w in zip(_LISTS, _WEIGHTS, strict=True)
        ],
        _one([1.0]),
        expected_metrics=_metrics_expected(),
    ),
    "legacy-aggregate-int": Case(
        "server/strategy/aggregate_test.py::test_aggregate (integer arrays, weights 1 and 2)",
        FedAvg,
        [
            ({"0": np.array([[1, 2, 3], [4, 5, 6]]), "1": np.array([7, 8, 9, 10])}, _n(k))
            for k in (1, 2)
        ],
        {"0": np.array([[1, 2, 3], [4, 5, 6]]), "1": np.array([7, 8, 9, 10])},
    ),
    "legacy-fedadagrad": Case(
        "server/strategy/fedadagrad_test.py::test_aggregate_fit",
        lambda: FedAdagrad(eta=0.1, eta_l=0.316, tau=0.5),
        [(_one([0.2] * 4, np.float32), _n(5)), (_one([1.0] * 4, np.float32), _n(5))],
        _one([0.15] * 4, np.float32),
        initial=_one([0.1] * 4, np.float32),
    ),
}
