"""Strategies end to end: real link, real nodes, expected models computed by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedzero.aggregation import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    FedTrimmedAvg,
    MultiKrum,
)
from fedzero.core import (
    ArrayRecord,
    ClientApp,
    ConfigRecord,
    Context,
    Grid,
    Message,
    MetricRecord,
    RecordDict,
)
from tests.helpers import federation

pytestmark = pytest.mark.timeout(120)

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    shift = float(context.node_config["shift"])
    arrays = {
        k: (v + shift).astype(v.dtype) for k, v in msg.content.array_records["arrays"].items()
    }
    config = msg.content.config_records["config"]
    metrics = {
        "num-examples": int(context.node_config["examples"]),
        "shift": shift,
        "round": int(config["server-round"]),
        "mu": float(config.get("proximal-mu", -1.0)),
    }
    return msg.create_reply(
        RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord(metrics)})
    )


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    w = msg.content.array_records["arrays"]["w"]
    metrics = {"mean-w": float(w.mean()), "num-examples": int(context.node_config["examples"])}
    return msg.create_reply(RecordDict({"metrics": MetricRecord(metrics)}))


NODES = [
    {"shift": 1.0, "examples": 1},
    {"shift": 2.0, "examples": 1},
    {"shift": 6.0, "examples": 2},
]
MEAN_SHIFT = (1.0 + 2.0 + 2 * 6.0) / 4  # weighted by examples


def _initial() -> ArrayRecord:
    return ArrayRecord({"w": np.zeros(10, np.float32), "b": np.ones(3, np.float64)})


def _run(strategy: Any, rounds: int = 3, nodes: list[dict[str, Any]] = NODES, **kw: Any) -> Any:
    with federation(app, nodes) as (link, _), Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=len(nodes))
        result = strategy.start(grid, _initial(), num_rounds=rounds, **kw)
        grid.get_node_ids()  # a round trip: the last report was handled
        link.sync()
        reader = link.store_reader()
        try:
            return result, reader.list_rounds(grid.run_id)
        finally:
            reader.close()


def test_fedavg_history_and_central_evaluation() -> None:
    seen: list[int] = []

    def central(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        seen.append(server_round)
        return {"w0": float(arrays["w"][0])}

    result, rounds = _run(
        FedAvg(min_available_nodes=3), evaluate_fn=central, train_config=ConfigRecord({"lr": 0.1})
    )
    np.testing.assert_allclose(result.arrays["w"], np.full(10, 3 * MEAN_SHIFT, np.float32))
    assert result.arrays["w"].dtype == np.float32
    np.testing.assert_allclose(result.arrays["b"], 1 + 3 * MEAN_SHIFT)
    assert seen == [0, 1, 2, 3]
    assert result.evaluate_metrics_serverapp[3]["w0"] == pytest.approx(3 * MEAN_SHIFT)
    assert result.train_metrics_clientapp[2]["round"] == pytest.approx(2)
    assert result.evaluate_metrics_clientapp[1]["mean-w"] == pytest.approx(MEAN_SHIFT)
    assert [r.round for r in rounds] == [1, 2, 3]
    assert rounds[0].metrics["w0"] == pytest.approx(MEAN_SHIFT)


def test_sampling_fraction() -> None:
    half = FedAvg(
        fraction_train=0.5, min_train_nodes=1, fraction_evaluate=0.0, min_available_nodes=3, seed=3
    )
    result, _ = _run(half, rounds=2)
    # Flower drops the weighting key from aggregated metrics; the rest is averaged.
    assert all(
        "num-examples" not in m and m["round"] for m in result.train_metrics_clientapp.values()
    )
    assert not result.evaluate_metrics_clientapp


def test_fedprox_sends_mu() -> None:
    result, _ = _run(FedProx(proximal_mu=0.5, min_available_nodes=3, fraction_evaluate=0), rounds=1)
    assert result.train_metrics_clientapp[1]["mu"] == pytest.approx(0.5)


def test_fedavgm_matches_the_momentum_formula() -> None:
    lr, momentum = 0.5, 0.9
    strategy = FedAvgM(
        server_learning_rate=lr,
        server_momentum=momentum,
        min_available_nodes=3,
        fraction_evaluate=0,
    )
    result, _ = _run(strategy)
    x, mom = 0.0, 0.0
    for r in range(3):
        g = x - (x + MEAN_SHIFT)
        mom = g if r == 0 else momentum * mom + g
        x = x - lr * mom
    np.testing.assert_allclose(result.arrays["w"], x, rtol=1e-6)


def test_fedadam_matches_the_adam_formula() -> None:
    s = FedAdam(
        min_available_nodes=3, fraction_evaluate=0, eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-9
    )
    result, _ = _run(s)
    x, m, v = 0.0, 0.0, 0.0
    for t in range(1, 4):
        delta = MEAN_SHIFT
        m = 0.9 * m + 0.1 * delta
        v = 0.99 * v + 0.01 * delta**2
        eta = 0.1 * np.sqrt(1 - 0.99 ** (t + 1)) / (1 - 0.9 ** (t + 1))
        x = x + eta * m / (np.sqrt(v) + 1e-9)
    np.testing.assert_allclose(result.arrays["w"], x, rtol=1e-5)


def test_robust_strategies_ignore_the_outlier() -> None:
    nodes = [{"shift": shift, "examples": 1} for shift in (1.0, 1.5, 2.0, 1.2, 1000.0)]
    trimmed, _ = _run(FedTrimmedAvg(beta=0.2, min_available_nodes=5, fraction_evaluate=0), 1, nodes)
    np.testing.assert_allclose(trimmed.arrays["w"], (1.2 + 1.5 + 2.0) / 3, rtol=1e-6)
    multikrum = MultiKrum(
        num_malicious_nodes=1, num_nodes_to_select=3, min_available_nodes=5, fraction_evaluate=0
    )
    krum, _ = _run(multikrum, 1, nodes)
    assert float(krum.arrays["w"][0]) < 3.0


def test_server_side_dp_clips_and_adds_noise() -> None:
    plain = FedAvg(min_available_nodes=3, fraction_evaluate=0)
    clipped, _ = _run(DifferentialPrivacyServerSideFixedClipping(plain, 0.0, 1.0, 3), rounds=1)
    # every update is shift * ones(13); clipped to norm 1 the shift is 1/sqrt(13) for each node
    np.testing.assert_allclose(clipped.arrays["w"], 1 / np.sqrt(13), rtol=1e-5)
    noisy, _ = _run(DifferentialPrivacyServerSideFixedClipping(plain, 10.0, 1.0, 3), rounds=1)
    assert not np.allclose(noisy.arrays["w"], clipped.arrays["w"])
