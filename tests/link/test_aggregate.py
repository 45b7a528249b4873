"""Link-side aggregation over real nodes, checked against NumPy on the same replies."""

from __future__ import annotations

import threading
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

pytestmark = pytest.mark.timeout(90)

RELEASE = threading.Event()
app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = context.node_config
    mode = cfg.get("mode", "ok")
    arrays = {k: v.copy() for k, v in msg.content.array_records["arrays"].items()}
    rng = np.random.default_rng(int(cfg["seed"]))
    for name, value in arrays.items():
        if value.dtype.kind == "f":
            arrays[name] = (value + rng.normal(0, 1, value.shape) * cfg.get("scale", 1.0)).astype(
                value.dtype
            )
        else:
            arrays[name] = value + int(cfg["seed"])
    if mode == "hang":
        RELEASE.wait(30)
    elif mode == "shape":
        arrays["w"] = np.zeros(3, np.float32)
    elif mode == "dtype":
        arrays["w"] = arrays["w"].astype(np.float64)
    elif mode == "missing":
        del arrays["b"]
    elif mode == "nan":
        arrays["w"][0] = np.nan
    elif mode == "fail":
        raise RuntimeError("training diverged")
    metrics = MetricRecord({"num-examples": int(cfg["examples"]), "loss": float(cfg["seed"])})
    content = RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics})
    if mode == "eval-too":  # a second record with a name of the first
        content["eval"] = MetricRecord({"loss": 10.0 * float(cfg["seed"]), "acc": 0.5})
    return msg.create_reply(content)


def _model() -> RecordDict:
    rng = np.random.default_rng(0)
    return RecordDict(
        {
            "arrays": ArrayRecord(
                {
                    "w": rng.normal(size=(64, 32)).astype(np.float32),
                    "b": rng.normal(size=32).astype(np.float32),
                    "count": np.array(5, np.int64),
                }
            )
        }
    )


def _configs(n: int, **special: dict[str, Any]) -> list[dict[str, Any]]:
    out = [{"seed": i + 1, "examples": 10 * (i + 1)} for i in range(n)]
    for index, extra in special.items():
        out[int(index.lstrip("n"))].update(extra)
    return out


def _raw_and_aggregated(
    grid: Grid, content: RecordDict, spec: dict[str, Any], **kw: Any
) -> tuple[list[Message], Any]:
    nodes = grid.get_node_ids()
    raw = grid.send_and_receive([grid.create_message(content, "train", n) for n in nodes])
    result = grid.send_and_receive(
        [grid.create_message(content, "train", n) for n in nodes], aggregate=spec, **kw
    )
    return raw, result


def _fedavg(replies: list[Message], name: str) -> np.ndarray:
    weights = np.array([r.content["metrics"]["num-examples"] for r in replies], np.float64)
    stack = np.stack([r.content["arrays"][name].astype(np.float64) for r in replies])
    return np.tensordot(weights / weights.sum(), stack, axes=1)


def test_fedavg_equals_numpy_on_the_same_replies() -> None:
    with federation(app, _configs(4)) as (link, _), Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=4)
        raw, result = _raw_and_aggregated(grid, _model(), {"method": "fedavg"})
        assert result.replies == 4
        assert not result.failures
        for name in ("w", "b"):
            np.testing.assert_allclose(
                result.arrays[name], _fedavg(raw, name), rtol=1e-5, atol=1e-6
            )
            assert result.arrays[name].dtype == np.float32
        assert result.arrays["count"].dtype == np.int64
        assert int(result.arrays["count"]) == int(np.rint(_fedavg(raw, "count")))
        expected_loss = (
            sum(r.content["metrics"]["loss"] * r.content["metrics"]["num-examples"] for r in raw)
            / 100
        )
        assert result.metrics["loss"] == pytest.approx(expected_loss)
        assert sorted(result.node_metrics) == sorted(grid.get_node_ids())


def test_trimmed_mean_equals_sort_and_slice() -> None:
    with (
        federation(app, _configs(5, n0={"scale": 50.0})) as (link, _),
        Grid(link.app_endpoint) as grid,
    ):
        grid.get_node_ids(min_nodes=5)
        raw, result = _raw_and_aggregated(grid, _model(), {"method": "trimmed_mean", "beta": 0.2})
        stack = np.sort(
            np.stack([r.content["arrays"]["w"] for r in raw]).astype(np.float64), axis=0
        )
        np.testing.assert_allclose(
            result.arrays["w"], stack[1:-1].mean(axis=0), rtol=1e-5, atol=1e-6
        )


def test_median_and_krum() -> None:
    with (
        federation(app, _configs(5, n4={"scale": 1000.0})) as (link, _),
        Grid(link.app_endpoint) as grid,
    ):
        grid.get_node_ids(min_nodes=5)
        raw, result = _raw_and_aggregated(grid, _model(), {"method": "median"})
        stack = np.stack([r.content["arrays"]["b"] for r in raw])
        np.testing.assert_allclose(result.arrays["b"], np.median(stack, axis=0), rtol=1e-6)
        content = _model()
        krum = grid.send_and_receive(
            [grid.create_message(content, "train", n) for n in grid.get_node_ids()],
            aggregate={"method": "krum", "num_malicious": 1},
        )
        outlier = next(r for r in raw if r.content["metrics"]["loss"] == 5.0)
        assert not np.array_equal(krum.arrays["w"], outlier.content["arrays"]["w"])
        assert any(np.array_equal(krum.arrays["w"], r.content["arrays"]["w"]) for r in raw)


def test_bad_replies_are_rejected_and_the_round_completes() -> None:
    special = {
        "n1": {"mode": "shape"},
        "n2": {"mode": "dtype"},
        "n3": {"mode": "missing"},
        "n4": {"mode": "nan"},
        "n5": {"mode": "fail"},
    }
    with federation(app, _configs(7, **special)) as (link, nodes), Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=7)
        raw, result = _raw_and_aggregated(grid, _model(), {"method": "fedavg"})
        good = [r for r in raw if r.has_content() and r.metadata.src_node_id in result.node_metrics]
        assert result.replies == 2
        assert len(good) == 2
        by_mode = {n.node_config.get("mode", "ok"): n.node_id for n in nodes}
        for mode in ("shape", "dtype", "missing", "nan"):
            assert result.failures[by_mode[mode]].code == ErrorCode.REJECTED, mode
        assert "NaN" in result.failures[by_mode["nan"]].reason
        assert result.failures[by_mode["fail"]].code == ErrorCode.CLIENT_APP_RAISED
        np.testing.assert_allclose(result.arrays["w"], _fedavg(good, "w"), rtol=1e-5, atol=1e-6)
        assert link.stats["replies_rejected"] == 4


def test_deadline_with_min_replies_aggregates_what_is_there() -> None:
    RELEASE.clear()
    try:
        with (
            federation(app, _configs(3, n2={"mode": "hang"})) as (link, nodes),
            Grid(link.app_endpoint) as grid,
        ):
            ids = grid.get_node_ids(min_nodes=3)
            content = _model()
            result = grid.send_and_receive(
                [grid.create_message(content, "train", n) for n in ids],
                aggregate={"method": "fedavg", "min_replies": 2},
                timeout=1.0,
            )
            hung = next(n.node_id for n in nodes if n.node_config.get("mode") == "hang")
            assert result.replies == 2
            assert result.failures[hung].code == ErrorCode.MESSAGE_EXPIRED
            RELEASE.set()
    finally:
        RELEASE.set()


def test_clip_norm_bounds_each_update() -> None:
    with (
        federation(app, _configs(3, n0={"scale": 100.0})) as (link, _),
        Grid(link.app_endpoint) as grid,
    ):
        grid.get_node_ids(min_nodes=3)
        content = _model()
        raw, result = _raw_and_aggregated(grid, content, {"method": "fedavg", "clip_norm": 1.0})
        g = {k: content["arrays"][k].astype(np.float64) for k in ("w", "b")}
        weights = np.array([r.content["metrics"]["num-examples"] for r in raw], np.float64)
        clipped = []
        for r in raw:
            delta = {k: r.content["arrays"][k].astype(np.float64) - g[k] for k in g}
            norm = np.sqrt(sum(float((d * d).sum()) for d in delta.values()))
            clipped.append({k: g[k] + d * min(1.0, 1.0 / norm) for k, d in delta.items()})
        expected = sum(w * c["w"] for w, c in zip(weights / weights.sum(), clipped, strict=True))
        np.testing.assert_allclose(result.arrays["w"], expected, rtol=1e-4, atol=1e-5)


def test_per_node_metrics_keep_a_name_of_several_records_once_per_record() -> None:
    configs = _configs(2, n0={"mode": "eval-too"}, n1={"mode": "eval-too"})
    with federation(app, configs) as (link, _), Grid(link.app_endpoint) as grid:
        nodes = grid.get_node_ids(min_nodes=2)
        content = _model()
        msgs = [grid.create_message(content, "train", n) for n in nodes]
        result = grid.send_and_receive(msgs, aggregate={"method": "fedavg"})
    assert result.replies == 2
    assert sorted(result.node_metrics) == sorted(nodes)
    for metrics in result.node_metrics.values():  # no record's "loss" won
        seed = metrics["num-examples"] / 10  # (_configs: examples = 10 * seed)
        assert metrics["metrics/loss"] == seed
        assert metrics["eval/loss"] == 10 * seed
        assert "loss" not in metrics
        assert metrics["acc"] == 0.5
