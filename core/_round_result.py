"""RoundResult: what a link-aggregated round gives back to the ServerApp."""

from __future__ import annotations

import dataclasses

from ._array_record import ArrayRecord
from ._message import Error, Message
from ._records import ConfigRecord, MetricRecord


@dataclasses.dataclass(slots=True)
class RoundResult:
    """The outcome of ``grid.send_and_receive(..., aggregate=...)``.

    Attributes:
        arrays: the aggregated arrays, or None if no reply could be used.
        metrics: the replies' metrics, averaged with the round's weights.
        node_metrics: each contributing node's own metrics.
        failures: why each failed node failed (offline, expired, app error,
            rejected update, ...).
        replies: how many replies were aggregated.
    """

    arrays: ArrayRecord | None
    metrics: MetricRecord
    node_metrics: dict[int, MetricRecord]
    failures: dict[int, Error]
    replies: int

    @classmethod
    def from_message(cls, msg: Message, arrays_key: str) -> RoundResult:
        """Read the link's result message (PROTOCOL.md, "Aggregated rounds")."""
        if msg.has_error():
            return cls(None, MetricRecord(), {}, {0: msg.error}, 0)
        content = msg.content
        summary = content.get("round")
        if not isinstance(summary, ConfigRecord):
            raise ValueError("the link's round result has no 'round' record")
        codes, reasons = summary["failure-codes"], summary["failure-reasons"]
        failures = {
            int(node): Error(int(code), str(reason))
            for node, code, reason in zip(summary["failed-nodes"], codes, reasons, strict=True)
        }
        node_metrics = {
            int(key.partition("/")[2]): rec
            for key, rec in content.metric_records.items()
            if key.startswith("node/")
        }
        arrays = content.get(arrays_key)
        metrics = content.get("metrics")
        return cls(
            arrays=arrays if isinstance(arrays, ArrayRecord) else None,
            metrics=metrics if isinstance(metrics, MetricRecord) else MetricRecord(),
            node_metrics=node_metrics,
            failures=failures,
            replies=int(summary["replies"]),
        )
