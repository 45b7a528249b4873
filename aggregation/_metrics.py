"""Weighted averaging of client metrics (Flower's weighted average by number of examples)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["weighted_metrics_mean"]

MetricValue = int | float | list[int] | list[float]


def _check_number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = (
            f"metric {key!r} must be an int, a float or a list of them, got {type(value).__name__}"
        )
        raise TypeError(msg)
    return float(value)


def weighted_metrics_mean(
    records: Sequence[tuple[Mapping[str, MetricValue], float]],
) -> dict[str, float | list[float]]:
    """Average metrics across clients, weighting each client (e.g. by its example count).

    For each key, ``sum(w_i * v_i) / sum(w_i)`` over the clients that report the key
    (lists are averaged element-wise and must have one length per key). When every
    client reports every key this is exactly Flower's ``aggregate_metricrecords``;
    unlike Flower, a key that some clients omit is not pulled towards zero.

    Args:
        records: ``(metrics, weight)`` pairs; weights finite and >= 0 with a
            positive total per key.

    Returns:
        Key to float, or to a list of floats.

    Raises:
        TypeError: On a non-numeric metric value.
        ValueError: On a bad weight, a list length mismatch, or zero total weight.
    """
    sums: dict[str, float | list[float]] = {}
    totals: dict[str, float] = {}
    for metrics, weight in records:
        w = float(weight)
        if not math.isfinite(w) or w < 0:
            msg = f"weights must be finite and >= 0, got {weight!r}"
            raise ValueError(msg)
        for key, value in metrics.items():
            if isinstance(value, list):
                vec = [_check_number(key, v) * w for v in value]
                prev = sums.setdefault(key, [0.0] * len(vec))
                if not isinstance(prev, list) or len(prev) != len(vec):
                    msg = f"metric {key!r} mixes lists of different lengths or lists and scalars"
                    raise ValueError(msg)
                sums[key] = [a + b for a, b in zip(prev, vec, strict=True)]
            else:
                scaled = _check_number(key, value) * w
                prev_s = sums.setdefault(key, 0.0)
                if isinstance(prev_s, list):
                    msg = f"metric {key!r} mixes lists and scalars"
                    raise ValueError(msg)
                sums[key] = prev_s + scaled
            totals[key] = totals.get(key, 0.0) + w
    out: dict[str, float | list[float]] = {}
    for key, total in sums.items():
        if totals[key] <= 0:
            msg = f"metric {key!r} has zero total weight; give clients positive weights"
            raise ValueError(msg)
        out[key] = (
            [v / totals[key] for v in total] if isinstance(total, list) else total / totals[key]
        )
    return out
