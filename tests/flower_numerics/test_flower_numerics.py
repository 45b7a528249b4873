"""Flower 1.42's strategy numbers, reached through fedzero's real path (issue 13, item 6).

One link and five nodes for the module (real sockets, link-side aggregation
where the strategy allows it). Two sources of cases:

- ``cases.py``: Flower's own numerical unit tests, re-stated as data.
- ``flower_1_42_figures.json``: what Flower 1.42.0's strategies return, two
  rounds each, on five fixed replies (``aggregate_train`` called by
  ``flower_figures_script.txt`` in a venv with ``flwr==1.42.0``; the nodes here
  reply the same arrays).

Every case must match within float32 rounding (float32 models: a few ulps
after two rounds of server optimisation) or exactly where Flower's test is
exact. Differences that remain are listed in the README's Flower section.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedzero.aggregation import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    QFedAvg,
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

from .cases import CASES, Case

pytestmark = pytest.mark.timeout(300)

FIGURES = json.loads((Path(__file__).parent / "flower_1_42_figures.json").read_text())
NODES = 5

# fedzero's strategy for each figure, with the arguments Flower's got.
FIGURE_STRATEGIES: dict[str, Any] = {
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
    "fedadagrad": FedAdagrad,
    "fedavgm": lambda: FedAvgM(server_learning_rate=0.5, server_momentum=0.9),
    "qfedavg": lambda: QFedAvg(client_learning_rate=0.1, q=0.2),
    "bulyan": lambda: Bulyan(num_malicious_nodes=0),
    "fedavg": FedAvg,
    "fedprox": lambda: FedProx(proximal_mu=0.1),
    "fedmedian": FedMedian,
    "fedtrimmedavg": lambda: FedTrimmedAvg(beta=0.2),
    "krum": lambda: Krum(num_malicious_nodes=1),
    "multikrum": lambda: MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3),
}


def _figure_reply(index: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    node = FIGURES["nodes"][index]
    arrays = {k: np.array(node[k], np.float32) for k in ("0", "1")}
    return arrays, {"num-examples": node["num-examples"], "train_loss": node["train_loss"]}


app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Answer what the case says this node answers."""
    config = msg.content.config_records["config"]
    name = str(config["case"])
    order = config["order"]  # the case's nodes by id: Flower's reply order is node-id order
    assert isinstance(order, list)
    index = order.index(context.node_id)
    if name.startswith("figure:"):
        arrays, metrics = _figure_reply(index)
    else:
        arrays, metrics = CASES[name].replies[index]
    content = RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord(metrics)})
    return msg.create_reply(content)


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[Any, list[int]]]:
    with federation(app, [{} for _ in range(NODES)]) as (link, nodes):
        yield link, sorted(int(n.node_id) for n in nodes)  # type: ignore[arg-type]


def _run(
    fleet: tuple[Any, list[int]],
    strategy: Any,
    name: str,
    initial: dict[str, Any],
    k: int,
    rounds: int,
) -> Any:
    """``rounds`` rounds of ``strategy`` with the first ``k`` nodes, case ``name``."""
    link, node_ids = fleet
    chosen = node_ids[:k]
    configure = strategy.configure_train

    def first_k(*args: Any) -> list[Message]:  # the nodes the case has replies for
        return [m for m in configure(*args) if m.metadata.dst_node_id in chosen]

    strategy.configure_train = first_k
    strategy.min_available_nodes = NODES
    strategy.fraction_evaluate = 0.0
    with Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=NODES)
        config = ConfigRecord({"case": name, "order": chosen})
        return strategy.start(grid, ArrayRecord(initial), num_rounds=rounds, train_config=config)


def _initial(case: Case) -> dict[str, np.ndarray]:
    if case.initial is not None:
        return case.initial
    return {k: np.zeros_like(v) for k, v in case.replies[0][0].items()}


@pytest.mark.parametrize("name", list(CASES))
def test_flowers_unit_test_cases(fleet: tuple[Any, list[int]], name: str) -> None:
    case = CASES[name]
    result = _run(fleet, case.strategy(), name, _initial(case), len(case.replies), case.rounds)
    assert not result.train_failures, result.train_failures
    for key, want in case.expected.items():
        got = np.asarray(result.arrays[key])
        assert got.shape == want.shape, key
        if case.decimal is not None:
            np.testing.assert_almost_equal(got, want, decimal=case.decimal)
        else:
            rtol = case.rtol or (1e-6 if got.dtype == np.float32 else 1e-12)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12)
    if case.expected_metrics is not None:
        metrics = result.train_metrics_clientapp[case.rounds]
        assert set(metrics) == set(case.expected_metrics)
        for key, want in case.expected_metrics.items():
            np.testing.assert_allclose(metrics[key], want, rtol=1e-12)


@pytest.mark.parametrize("name", list(FIGURE_STRATEGIES))
def test_flower_1_42_figures(fleet: tuple[Any, list[int]], name: str) -> None:
    figure = FIGURES["cases"][name]
    initial = {k: np.array(v, np.float32) for k, v in FIGURES["initial"].items()}
    result = _run(fleet, FIGURE_STRATEGIES[name](), f"figure:{name}", initial, NODES, 2)
    assert not result.train_failures, result.train_failures
    for key, want in figure["rounds"][-1].items():
        got = np.asarray(result.arrays[key], np.float64)
        np.testing.assert_allclose(got, np.array(want), rtol=1e-5, atol=1e-6, err_msg=name)
    metrics = result.train_metrics_clientapp[2]
    assert set(metrics) == set(figure["metrics"]), name  # the weighting key is dropped
    expected = LINK_KRUM_METRICS if name in LINK_KRUM_METRICS_CASES else figure["metrics"]
    for key, want in expected.items():
        assert metrics[key] == pytest.approx(want, rel=1e-12), (name, key)


# A difference, in the README's Flower section: with link-side Krum / Multi-Krum the
# round's train metrics average every folded reply (the link's result does not say
# which replies Krum selected); Flower averages the selected replies' metrics only.
LINK_KRUM_METRICS_CASES = ("krum", "multikrum")
LINK_KRUM_METRICS = {
    "train_loss": sum(n["train_loss"] * n["num-examples"] for n in FIGURES["nodes"])
    / sum(n["num-examples"] for n in FIGURES["nodes"])
}
