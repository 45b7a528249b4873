"""Replies larger than the upload window (issue 12 item 8): each is admitted alone.

A link whose window is 4 MB aggregates a round of 10 MB replies: every reply
gets its credit when nothing else is in flight, so the link holds one upload
at a time (its memory stays O(model + window), not O(model x uploads)), and
the aggregate is exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedzero.core import ArrayRecord, ClientApp, Context, Grid, Message, MetricRecord, RecordDict
from tests.helpers import federation

pytestmark = pytest.mark.timeout(120)

PARAMS = 2_500_000  # 10 MB of float32: more than twice the window

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Reply with the model + 1, weighted 1."""
    arrays = ArrayRecord({k: v + 1 for k, v in msg.content["arrays"].items()})
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 1})})
    return msg.create_reply(content)


def test_replies_larger_than_the_window_are_admitted_one_at_a_time() -> None:
    with (
        federation(app, [{}, {}, {}], max_upload_mb=4) as (link, _),
        Grid(link.app_endpoint) as grid,
    ):
        nodes = grid.get_node_ids(min_nodes=3)
        model = (np.arange(PARAMS) % 64).astype(np.float32)
        content = RecordDict({"arrays": ArrayRecord({"w": model})})
        messages = [grid.create_message(content, "train", n, "1") for n in nodes]
        result = grid.send_and_receive(messages, aggregate={"method": "fedavg"})
        assert result.replies == 3
        assert not result.failures
        assert result.arrays is not None
        np.testing.assert_array_equal(result.arrays["w"], model + 1)
        assert link.credit_high_water == 1  # never two 10 MB uploads held at once
        assert link.credit_in_flight == 0
