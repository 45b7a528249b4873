"""A reply's weight is strict: missing, ambiguous or unusable weights are rejected, never 1.

Huge (1e308) and subnormal weights are normalised in float64, and a round whose
aggregate would not be finite fails with a clear error instead of returning it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedzero.core import (
    ArrayRecord,
    ClientApp,
    Context,
    ErrorCode,
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
    cfg = context.node_config
    value = float(cfg.get("value", 1.0))
    arrays = {"w": np.full(4, value, np.float32)}
    weight = cfg.get("weight", 1)
    if isinstance(weight, str):
        weight = float(weight)
    records: dict[str, Any] = {"arrays": ArrayRecord(arrays)}
    mode = cfg.get("mode", "")
    if mode != "no-metrics":
        metrics: dict[str, Any] = {"loss": value}
        if mode != "no-weight":
            metrics["num-examples"] = weight
        records["metrics"] = MetricRecord(metrics)
    if mode == "two-records":  # "whichever came last" must not decide
        records["extra"] = MetricRecord({"num-examples": 10**6})
    if mode == "list-weight":
        records["metrics"] = MetricRecord({"num-examples": [1, 2]})
    return msg.create_reply(RecordDict(records))


def _round(grid: Grid, spec: dict[str, Any] | None = None) -> Any:
    nodes = grid.get_node_ids()
    content = RecordDict({"arrays": ArrayRecord({"w": np.zeros(4, np.float32)})})
    msgs = [grid.create_message(content, "train", n, group_id="1") for n in nodes]
    return grid.send_and_receive(msgs, aggregate={"method": "fedavg", **(spec or {})}, timeout=60)


@pytest.mark.parametrize("mode", ["no-weight", "no-metrics", "two-records", "list-weight"])
def test_a_reply_without_one_usable_weight_is_rejected_not_weighted_one(mode: str) -> None:
    configs = [{"value": 1.0, "weight": 3}, {"value": 100.0, "mode": mode}]
    with federation(app, configs) as (link, nodes), Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=2)
        result = _round(grid)
        bad = nodes[1].node_id
        assert result.replies == 1
        assert result.failures[bad].code == ErrorCode.REJECTED
        assert "num-examples" in result.failures[bad].reason
        np.testing.assert_array_equal(result.arrays["w"], np.full(4, 1.0, np.float32))
        assert link.stats["replies_rejected"] >= 1


@pytest.mark.parametrize("weight", ["0", "-5", "nan", "inf"])
def test_a_weight_that_is_not_finite_and_positive_is_rejected(weight: str) -> None:
    configs = [{"value": 1.0, "weight": 3}, {"value": 100.0, "weight": weight}]
    with federation(app, configs) as (link, nodes), Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=2)
        result = _round(grid)
        assert result.replies == 1
        assert result.failures[nodes[1].node_id].code == ErrorCode.REJECTED
        np.testing.assert_array_equal(result.arrays["w"], np.full(4, 1.0, np.float32))


@pytest.mark.parametrize(
    ("weights", "mean"),
    [(("1e308", "1e308"), 2.5), (("5e-324", "1e-323"), 3.0)],
    ids=["huge", "subnormal"],
)
def test_extreme_weights_give_a_finite_exact_mean(weights: tuple[str, str], mean: float) -> None:
    configs = [{"value": 1.0, "weight": weights[0]}, {"value": 4.0, "weight": weights[1]}]
    with federation(app, configs) as (link, _), Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=2)
        result = _round(grid)
        assert result.replies == 2, result.failures
        np.testing.assert_array_equal(result.arrays["w"], np.full(4, mean, np.float32))
        assert result.metrics["loss"] == pytest.approx(mean)


def test_scaling_every_weight_by_a_power_of_two_changes_no_bit() -> None:
    plain = [{"value": 0.1, "weight": 600}, {"value": 0.7, "weight": 1000}]
    scaled = [{**c, "weight": str(c["weight"] * 2.0**-40)} for c in plain]
    results = []
    for configs in (plain, scaled):
        with federation(app, configs) as (link, _), Grid(link.app_endpoint) as grid:
            grid.get_node_ids(min_nodes=2)
            results.append(_round(grid))
    first, second = (r.arrays["w"] for r in results)
    assert first.tobytes() == second.tobytes()
    expected = np.float32((0.1 * 600 + 0.7 * 1000) / 1600)
    np.testing.assert_allclose(first, np.full(4, expected), rtol=1e-6)


def test_a_round_whose_aggregate_overflows_fails_with_a_clear_error() -> None:
    configs = [{"value": 3e38, "weight": 1}] * 3  # the float32 sum of halves overflows
    with federation(app, configs) as (link, _), Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=3)
        result = _round(grid, {"accumulator": "float32"})
        assert result.arrays is None
        reasons = " ".join(e.reason for e in result.failures.values())
        assert "not finite" in reasons
