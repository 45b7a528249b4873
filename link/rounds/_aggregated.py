"""One aggregated round on the IO thread: its bookkeeping and the message that answers it."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from fedzero.core import ArrayRecord, ConfigRecord, Message, Metadata, MetricRecord, RecordDict
from fedzero.core.wire import new_message_id

from ._spec import AggregateSpec


@dataclasses.dataclass(slots=True)
class AggregatedRound:
    """Bookkeeping of one aggregated round (IO thread only)."""

    spec: AggregateSpec
    run_id: int
    app_routing_id: bytes
    template: Metadata
    expected: int
    started: float = dataclasses.field(default_factory=time.monotonic)
    resolved: int = 0
    folded: int = 0
    queued: int = 0
    finishing: bool = False
    failures: dict[int, tuple[int, str]] = dataclasses.field(default_factory=dict)
    node_metrics: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def complete(self, now: float) -> bool:
        """Whether the completion rule holds (and no fold is still queued)."""
        if self.finishing or self.queued:
            return False
        if self.resolved >= self.expected:
            return True
        late = self.spec.deadline > 0 and now - self.started >= self.spec.deadline
        return late and self.folded >= self.spec.min_replies


def result_message(
    rnd: AggregatedRound, arrays: dict[str, np.ndarray] | None, metrics: dict[str, Any]
) -> Message:
    """Build the one message that answers an aggregated round."""
    now = time.time()
    template = rnd.template
    meta = dataclasses.replace(
        template,
        message_id=new_message_id(),
        src_node_id=0,
        dst_node_id=0,
        reply_to_message_id=rnd.spec.round_id,
        created_at=now,
        ttl=max(0.0, template.created_at + template.ttl - now),
    )
    content = RecordDict()
    if arrays is not None:
        content[rnd.spec.arrays_key] = ArrayRecord(arrays, copy=False)
    content["metrics"] = MetricRecord(metrics)
    failed = sorted(rnd.failures)
    summary = {
        "replies": rnd.folded,
        "nodes": sorted(rnd.node_metrics),
        "failed-nodes": failed,
        "failure-codes": [rnd.failures[n][0] for n in failed],
        "failure-reasons": [rnd.failures[n][1] for n in failed],
    }
    content["round"] = ConfigRecord(summary)
    for node_id, node_metrics in sorted(rnd.node_metrics.items()):
        content[f"node/{node_id}"] = MetricRecord(node_metrics)
    return Message.from_parts(meta, content, None)
