"""Server-side DP clipping under weight-blind strategies, end to end (issue 13, item 4).

A real link and five real nodes. Each node moves every coordinate of the model
by its own shift; with a clipping norm of 1 some updates are clipped and some
are not. The strategy must see exactly the five clipped updates: never the
sent model as an extra client, never a rejected reply.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedzero.aggregation import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
)
from fedzero.core import ArrayRecord, ClientApp, Context, Grid, Message, MetricRecord, RecordDict
from tests.helpers import federation

pytestmark = pytest.mark.timeout(120)

SHIFTS = (0.1, 0.2, 0.3, 0.25, 1000.0)
SIZE = 13  # 10 float32 + 3 float64 coordinates
NORM = 1.0

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    shift = float(context.node_config["shift"])
    arrays = {
        k: (v + shift).astype(v.dtype) for k, v in msg.content.array_records["arrays"].items()
    }
    metrics = MetricRecord({"num-examples": 1, "shift": shift})
    return msg.create_reply(RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}))


def _clipped_shifts() -> np.ndarray:
    """Each node's shift after clipping its update (shift * ones(13)) to norm 1."""
    shifts = np.array(SHIFTS)
    norms = np.abs(shifts) * np.sqrt(SIZE)
    return shifts * np.minimum(1.0, NORM / norms)


def _krum_pick(values: np.ndarray, f: int, m: int) -> np.ndarray:
    """Flower's select_multikrum on scalar-per-coordinate updates (ties: first index)."""
    dist = SIZE * (values[:, None] - values[None, :]) ** 2
    closest = max(1, len(values) - f - 2)
    scores = [np.sort(row)[1 : closest + 1].sum() for row in dist]
    return values[np.argsort(scores, kind="stable")[:m]]


def _run(strategy: Any) -> Any:
    nodes = [{"shift": s} for s in SHIFTS]
    initial = ArrayRecord({"w": np.zeros(10, np.float32), "b": np.zeros(3, np.float64)})
    with federation(app, nodes) as (link, _), Grid(link.app_endpoint) as grid:
        grid.get_node_ids(min_nodes=len(nodes))
        private = DifferentialPrivacyServerSideFixedClipping(strategy, 0.0, NORM, len(nodes))
        return private.start(grid, initial, num_rounds=1)


def _common() -> dict[str, Any]:
    return {"min_available_nodes": 5, "fraction_evaluate": 0.0}


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (FedMedian(**_common()), float(np.median(_clipped_shifts()))),
        (FedTrimmedAvg(beta=0.2, **_common()), float(np.sort(_clipped_shifts())[1:4].mean())),
        (Krum(num_malicious_nodes=1, **_common()), float(_krum_pick(_clipped_shifts(), 1, 1)[0])),
        (
            MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3, **_common()),
            float(_krum_pick(_clipped_shifts(), 1, 3).mean()),
        ),
        (FedAvg(**_common()), float(_clipped_shifts().mean())),
    ],
    ids=["median", "trimmed-mean", "krum", "multikrum", "fedavg"],
)
def test_weight_blind_strategies_see_exactly_the_clipped_updates(
    strategy: Any, expected: float
) -> None:
    result = _run(strategy)
    assert not result.train_failures.get(1), result.train_failures  # no reply rejected
    assert expected > 0.05  # the model moves
    np.testing.assert_allclose(result.arrays["w"], np.full(10, expected, np.float32), rtol=1e-5)
    np.testing.assert_allclose(result.arrays["b"], np.full(3, expected), rtol=1e-5)
