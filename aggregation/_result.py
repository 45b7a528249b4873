"""The history a strategy's run returns (Flower's ``Result``)."""

from __future__ import annotations

import dataclasses

from fedzero.core import ArrayRecord, Error, MetricRecord


@dataclasses.dataclass(slots=True)
class Result:
    """What :meth:`Strategy.start` returns (Flower's ``Result``, plus two fedzero fields).

    Attributes:
        arrays: the final global model.
        train_metrics_clientapp: per round, the nodes' aggregated train metrics.
        evaluate_metrics_clientapp: per round, the nodes' aggregated evaluate metrics.
        evaluate_metrics_serverapp: per round (0 = initial model), ``evaluate_fn``'s metrics.
        train_failures: per round, the nodes that failed and why (fedzero).
        round_seconds: per round, the wall time of the train round (fedzero).
    """

    arrays: ArrayRecord = dataclasses.field(default_factory=ArrayRecord)
    train_metrics_clientapp: dict[int, MetricRecord] = dataclasses.field(default_factory=dict)
    evaluate_metrics_clientapp: dict[int, MetricRecord] = dataclasses.field(default_factory=dict)
    evaluate_metrics_serverapp: dict[int, MetricRecord] = dataclasses.field(default_factory=dict)
    train_failures: dict[int, dict[int, Error]] = dataclasses.field(default_factory=dict)
    round_seconds: dict[int, float] = dataclasses.field(default_factory=dict)
