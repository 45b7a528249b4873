"""Flower's strategy contract on a real link and real nodes (issue 13, item 3).

One federation of five nodes for the module; each test runs its strategy on a
Grid of its own. The hooks are called, an ``aggregate_train`` override gets the
replies, metrics drop the weighting key, the client-side DP mods clip, the
accountant's epsilon reaches the link's round reports, and the strategies
Flower has beyond FedAvg (Bulyan, QFedAvg, FedXgb*) run end to end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pytest
from dp_accounting import GaussianDpEvent  # type: ignore[import-untyped]
from dp_accounting.rdp import RdpAccountant  # type: ignore[import-untyped]

from fedzero.aggregation import (
    Bulyan,
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
    FedXgbBagging,
    FedXgbCyclic,
    adaptiveclipping_mod,
    fixedclipping_mod,
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

SHIFTS = (0.5, 1.0, 1.5, 2.0, 40.0)
EXAMPLES = (1, 1, 2, 2, 4)


def _dp_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """The Flower DP mod the server's config asks for (none without a bound)."""
    config = msg.content.config_records.get("config", ConfigRecord())
    if "clipping_norm" not in config:
        return call_next(msg, context)
    mod = adaptiveclipping_mod if config.get("adaptive") else fixedclipping_mod
    return mod(msg, context, call_next)


app = ClientApp(mods=[_dp_mod])


@app.train()
def train(msg: Message, context: Context) -> Message:
    shift = float(context.node_config["shift"])
    arrays = msg.content.array_records["arrays"]
    if "0" in arrays:  # an XGBoost-style model: JSON bytes
        return msg.create_reply(
            RecordDict({"arrays": _xgb_reply(arrays, shift), "m": _metrics(context)})
        )
    config = msg.content.config_records["config"]
    moved = ArrayRecord({k: (v + shift).astype(v.dtype) for k, v in arrays.items()})
    metrics = _metrics(context)
    metrics["tag"] = float(config.get("tag", 0.0))
    return msg.create_reply(RecordDict({"arrays": moved, "metrics": metrics}))


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return msg.create_reply(RecordDict({"metrics": _metrics(context)}))


def _metrics(context: Context) -> MetricRecord:
    shift = float(context.node_config["shift"])
    return MetricRecord(
        {"num-examples": int(context.node_config["examples"]), "shift": shift, "loss": shift / 10}
    )


def _xgb_model(trees: int) -> bytes:
    model = {
        "learner": {
            "gradient_booster": {
                "model": {
                    "gbtree_model_param": {"num_trees": str(trees), "num_parallel_tree": "1"},
                    "iteration_indptr": list(range(trees + 1)),
                    "trees": [{"id": i} for i in range(trees)],
                    "tree_info": [0] * trees,
                }
            }
        }
    }
    return json.dumps(model).encode()


def _xgb_reply(arrays: ArrayRecord, shift: float) -> ArrayRecord:
    """One new tree, tagged with the node's shift."""
    model = json.loads(_xgb_model(1))
    model["learner"]["gradient_booster"]["model"]["trees"][0]["shift"] = shift
    return ArrayRecord({"0": np.frombuffer(json.dumps(model).encode(), np.uint8).copy()})


@pytest.fixture(scope="module")
def link() -> Iterator[Any]:
    nodes = [{"shift": s, "examples": e} for s, e in zip(SHIFTS, EXAMPLES, strict=True)]
    with federation(app, nodes) as (link, _):
        yield link


def _initial() -> ArrayRecord:
    return ArrayRecord({"w": np.zeros(3, np.float32), "n": np.zeros(2, np.int64)})


def _start(link: Any, strategy: Any, rounds: int = 1, **kw: Any) -> tuple[Any, Any]:
    with Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=len(SHIFTS))
        result = strategy.start(grid, kw.pop("initial", _initial()), num_rounds=rounds, **kw)
        grid.get_node_ids()  # a round trip: the last report was handled
        link.sync()
        reader = link.store_reader()
        try:
            return result, reader.list_rounds(grid.run_id)
        finally:
            reader.close()


def _opts(**kw: Any) -> dict[str, Any]:
    return {"min_available_nodes": 5, "fraction_evaluate": 0.0, **kw}


WEIGHTED = float(np.dot(SHIFTS, EXAMPLES) / sum(EXAMPLES))


class Recording(FedAvg):
    """A Flower-style subclass: its own configure_train and aggregate_train."""

    seen: list[list[int]]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config["tag"] = 7.0
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        self.seen.append(sorted(m.metadata.src_node_id for m in replies))
        arrays, metrics = super().aggregate_train(server_round, replies)
        assert metrics is not None
        metrics["replies"] = len(replies)
        return arrays, metrics


def test_an_aggregate_train_override_gets_the_replies(link: Any) -> None:
    strategy = Recording(**_opts())
    strategy.seen = []
    assert strategy.link_spec() is None
    assert FedAvg().link_spec() is not None
    result, rounds = _start(link, strategy, rounds=2)
    assert [len(s) for s in strategy.seen] == [5, 5]
    np.testing.assert_allclose(result.arrays["w"], 2 * WEIGHTED, rtol=1e-6)
    np.testing.assert_array_equal(result.arrays["n"], np.rint([2 * WEIGHTED] * 2).astype(np.int64))
    metrics = result.train_metrics_clientapp[2]
    assert metrics["replies"] == 5
    assert metrics["tag"] == pytest.approx(7.0)
    assert "num-examples" not in metrics  # Flower drops the weighting key
    assert rounds[1].metrics["train-replies"] == 5


def test_metrics_aggr_fns_on_the_link_path(link: Any) -> None:
    calls: list[int] = []

    def total(contents: list[RecordDict], key: str) -> MetricRecord:
        calls.append(len(contents))
        return MetricRecord({"total": sum(float(c["metrics"][key]) for c in contents)})

    strategy = FedAvg(**_opts(fraction_evaluate=1.0), train_metrics_aggr_fn=total)
    result, _ = _start(link, strategy)
    assert calls == [5]
    assert result.train_metrics_clientapp[1] == MetricRecord({"total": float(sum(EXAMPLES))})
    evaluated = result.evaluate_metrics_clientapp[1]
    assert "num-examples" not in evaluated
    assert evaluated["shift"] == pytest.approx(WEIGHTED)
    np.testing.assert_allclose(result.arrays["w"], WEIGHTED, rtol=1e-6)


def _clipped(norm: float) -> np.ndarray:
    """Each node's shift once its update (shift on 3 float coordinates) is clipped."""
    shifts = np.array(SHIFTS)
    return shifts * np.minimum(1.0, norm / (shifts * np.sqrt(3)))


def test_client_side_fixed_clipping_with_the_mod(link: Any) -> None:
    private = DifferentialPrivacyClientSideFixedClipping(FedAvg(**_opts()), 0.0, 2.0, 5)
    result, _ = _start(link, private)
    expected = np.dot(_clipped(2.0), EXAMPLES) / sum(EXAMPLES)
    np.testing.assert_allclose(result.arrays["w"], expected, rtol=1e-6)


def test_client_side_adaptive_clipping_moves_the_bound(link: Any) -> None:
    inner = FedAvg(**_opts())
    private = DifferentialPrivacyClientSideAdaptiveClipping(
        inner, 0.0, 5, initial_clipping_norm=1.0
    )
    original = private.configure_train

    def with_flag(rnd: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Any:
        config["adaptive"] = 1
        return original(rnd, arrays, config, grid)

    private.configure_train = with_flag  # type: ignore[method-assign]
    result, rounds = _start(link, private)
    clipped = int(np.sum(np.array(SHIFTS) * np.sqrt(3) > 1.0))  # norm bits of round 1
    expected_norm = np.exp(-0.2 * (clipped / 5 - 0.5))
    assert private.clipping_norm == pytest.approx(expected_norm)
    assert rounds[0].metrics["dp-clipping-norm"] == pytest.approx(expected_norm)
    assert result.train_metrics_clientapp[1]["norm_bit"] == pytest.approx(
        sum(e for s, e in zip(SHIFTS, EXAMPLES, strict=True) if s * np.sqrt(3) > 1) / 10
    )


def test_server_side_adaptive_clipping_clips_then_moves_the_bound(link: Any) -> None:
    private = DifferentialPrivacyServerSideAdaptiveClipping(
        FedMedian(**_opts()), 0.0, 5, initial_clipping_norm=1.0
    )
    assert private.link_spec() is None  # every update's norm is needed: the replies come back
    result, _ = _start(link, private)
    np.testing.assert_allclose(result.arrays["w"], np.median(_clipped(1.0)), rtol=1e-6)
    clipped = int(np.sum(np.array(SHIFTS) * np.sqrt(3) > 1.0))
    assert private.clipping_norm == pytest.approx(np.exp(-0.2 * (clipped / 5 - 0.5)))


def test_the_accountant_reports_epsilon_with_each_round(link: Any) -> None:
    private = DifferentialPrivacyServerSideFixedClipping(FedAvg(**_opts()), 1.5, 1.0, 5)
    _, rounds = _start(link, private, rounds=2)
    for k, row in enumerate(rounds, start=1):
        accountant = RdpAccountant()
        accountant.compose(GaussianDpEvent(1.5), k)
        assert row.metrics["dp-epsilon"] == pytest.approx(accountant.get_epsilon(1e-5))
        assert row.metrics["dp-delta"] == 1e-5
    assert private.privacy_spent()[0] == pytest.approx(rounds[1].metrics["dp-epsilon"])


def test_bulyan_end_to_end(link: Any) -> None:
    # f = 0: theta = 5 replies selected, beta = 5 closest to the median: the mean
    result, _ = _start(link, Bulyan(**_opts()))
    np.testing.assert_allclose(result.arrays["w"], np.mean(SHIFTS), rtol=1e-6)
    assert "num-examples" not in result.train_metrics_clientapp[1]


def test_xgb_bagging_and_cyclic_move_models_as_bytes(link: Any) -> None:
    initial = ArrayRecord({"0": np.frombuffer(_xgb_model(2), np.uint8).copy()})
    result, _ = _start(link, FedXgbBagging(**_opts()), rounds=2, initial=initial)
    model = json.loads(np.asarray(result.arrays["0"]).tobytes())["learner"]["gradient_booster"]
    trees = model["model"]["trees"]
    assert len(trees) == 2 + 2 * 5
    assert [t["id"] for t in trees] == list(range(12))
    assert sorted(t["shift"] for t in trees[2:7]) == sorted(SHIFTS)
    cyclic = FedXgbCyclic(**_opts())
    result, rounds = _start(link, cyclic, rounds=3, initial=initial)
    assert [r.metrics["failures"] for r in rounds] == [0, 0, 0]
    order = sorted(cyclic.registered_nodes, key=cyclic.registered_nodes.__getitem__)
    assert order == sorted(order)  # the cycle goes by node id
    model = json.loads(np.asarray(result.arrays["0"]).tobytes())["learner"]["gradient_booster"]
    assert len(model["model"]["trees"]) == 1  # the last node's own model


def test_mods_wrap_in_flowers_order_and_lifespan_wraps_each_message() -> None:
    seen: list[str] = []

    def mod(name: str) -> Any:
        def wrap(msg: Message, ctx: Context, call_next: Any) -> Message:
            seen.append(f"{name}<")
            reply = call_next(msg, ctx)
            seen.append(f">{name}")
            return reply

        return wrap

    client = ClientApp(mods=[mod("a"), mod("b")])

    @client.lifespan()
    def life(context: Context) -> Iterator[None]:
        seen.append("enter")
        yield
        seen.append("exit")

    @client.query(mods=[mod("c")])
    def query(msg: Message, context: Context) -> Message:
        seen.append("handler")
        return msg.create_reply(RecordDict())

    msg = Message(RecordDict(), dst_node_id=1, message_type="query")
    client(msg, Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={}))
    assert seen == ["enter", "a<", "b<", "c<", "handler", ">c", ">b", ">a", "exit"]
