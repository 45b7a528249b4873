"""Strategy configuration, specs and server steps; client-side DP end to end on loopback."""

from __future__ import annotations

import numpy as np
import pytest

from fedzero.aggregation import (
    DifferentialPrivacyClientSideFixedClipping,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    ServerAdagrad,
    ServerAdam,
    ServerYogi,
)
from fedzero.core import (
    ArrayRecord,
    ClientApp,
    ConfigurationError,
    Context,
    Grid,
    Message,
    MetricRecord,
    RecordDict,
)
from tests.helpers import federation


def test_bad_configuration_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="fraction_train"):
        FedAvg(fraction_train=1.5)
    with pytest.raises(ConfigurationError, match="min_train_nodes"):
        FedAvg(min_train_nodes=-1)
    with pytest.raises(ValueError, match="clipping_norm > 0"):  # still a ValueError
        DifferentialPrivacyClientSideFixedClipping(FedAvg(), 1.0, 0.0, 3)
    with pytest.raises(ConfigurationError, match="beta"):
        FedTrimmedAvg(beta=0.5)


def test_multikrum_spec() -> None:
    spec = MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3).aggregate_spec()
    assert spec == {"method": "multikrum", "num_malicious": 1, "num_selected": 3}


@pytest.mark.parametrize(
    ("strategy", "optimizer"),
    [
        (FedAdam(eta=0.3, beta_1=0.8, tau=1e-4), ServerAdam(eta=0.3, beta_1=0.8, tau=1e-4)),
        (FedYogi(eta=0.2), ServerYogi(eta=0.2)),
        (FedAdagrad(eta_l=0.5, tau=1e-2), ServerAdagrad(eta_l=0.5, tau=1e-2)),
    ],
    ids=["adam", "yogi", "adagrad"],
)
def test_fedopt_strategies_hand_their_hyperparameters_to_the_optimizer(
    strategy: FedAdam, optimizer: ServerAdam
) -> None:
    rng = np.random.default_rng(9)
    current = ArrayRecord(
        {"w": rng.standard_normal(6).astype(np.float32), "n": np.ones(1, np.int64)}
    )
    for rnd in (1, 2):
        aggregated = ArrayRecord(
            {"w": rng.standard_normal(6).astype(np.float32), "n": np.full(1, rnd, np.int64)}
        )
        want = optimizer.step({"w": current["w"]}, {"w": aggregated["w"]}, rnd)["w"]
        current = strategy.update_global(rnd, current, aggregated)
        np.testing.assert_array_equal(current["w"], want)
        np.testing.assert_array_equal(current["n"], aggregated["n"])  # not a float: taken as is


app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content.config_records["config"]
    arrays = msg.content.array_records["arrays"]
    bound = float(config.get("clipping-norm", -1.0))
    metrics = MetricRecord({"num-examples": 1, "clipping-norm": bound})
    update = ArrayRecord({k: (v + 10.0).astype(v.dtype) for k, v in arrays.items()})
    return msg.create_reply(RecordDict({"arrays": update, "metrics": metrics}))


def test_client_side_dp_sends_the_bound_and_the_link_does_not_clip() -> None:
    plain = FedAvg(min_available_nodes=2, fraction_evaluate=0)
    private = DifferentialPrivacyClientSideFixedClipping(plain, 0.0, 1.0, 2)
    initial = ArrayRecord({"w": np.zeros(4, np.float32)})
    with federation(app, [{}, {}]) as (link, _), Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=2)
        result = private.start(grid, initial, num_rounds=1)
    assert result.train_metrics_clientapp[1]["clipping-norm"] == 1.0
    np.testing.assert_array_equal(result.arrays["w"], np.full(4, 10.0, np.float32))


def test_serverapp_side_krum_breaks_score_ties_by_node_order() -> None:
    # Flower's krum_test case: 0.7 and 1.0 tie (each one's nearest neighbour is the other).
    def content(value: float) -> RecordDict:
        arrays = ArrayRecord({"0": np.full(4, value)})
        return RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 5})})

    strategy = Krum(num_malicious_nodes=1)
    for order in ([0.2, 0.7, 1.0], [0.2, 1.0, 0.7]):  # replies come in node-id order
        arrays, used = strategy.aggregate_arrays(1, [content(v) for v in order])
        assert arrays is not None
        assert float(arrays["0"][0]) == order[1]  # the lower node id wins the tie
        assert len(used) == 1
