"""Evaluate metrics are averaged by their weight; a reply without one is left out, never 1."""

from __future__ import annotations

import numpy as np
import pytest

from fedzero.aggregation import FedAvg
from fedzero.core import ArrayRecord, ClientApp, Context, Grid, Message, MetricRecord, RecordDict
from tests.helpers import federation

pytestmark = pytest.mark.timeout(120)

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = msg.content.array_records["arrays"]
    metrics = MetricRecord({"num-examples": 1})
    return msg.create_reply(RecordDict({"arrays": arrays, "metrics": metrics}))


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    metrics = {"score": float(context.node_config["score"])}
    if context.node_config["examples"]:  # one node forgets its weight
        metrics["num-examples"] = int(context.node_config["examples"])
    return msg.create_reply(RecordDict({"metrics": MetricRecord(metrics)}))


def test_a_reply_without_its_weight_does_not_count_as_one() -> None:
    nodes = [
        {"score": 1.0, "examples": 1},
        {"score": 4.0, "examples": 3},
        {"score": 1000.0, "examples": 0},  # no num-examples: left out
    ]
    with federation(app, nodes) as (link, _), Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=len(nodes))
        initial = ArrayRecord({"w": np.zeros(2, np.float32)})
        result = FedAvg(min_available_nodes=3).start(grid, initial, num_rounds=1)
    assert result.evaluate_metrics_clientapp[1]["score"] == pytest.approx((1.0 + 3 * 4.0) / 4)
