"""Aggregation of reply messages on the ServerApp, in NumPy (Flower's helpers).

The link aggregates a round as replies arrive when the strategy lets it (see
:meth:`Strategy.link_spec`). When a strategy needs the replies themselves (a
subclass overriding ``aggregate_train``, DP clipping under a weight-blind rule,
Bulyan, QFedAvg, ...) these functions do the same arithmetic on the ServerApp:
Flower 1.42's ``aggregate_arrayrecords``, ``aggregate_metricrecords``,
``trim_mean``, ``select_multikrum`` and ``aggregate_n_closest_weights``.

Two differences from Flower, on purpose and the same as the link's:
integer and boolean arrays are averaged in float64 and rounded back to their
dtype (Flower returns float64 arrays for them), and Krum's score ties are
broken by node id (replies are ordered by source node), not arrival order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import structlog

from fedzero.core import ArrayRecord, Message, MetricRecord, RecordDict
from fedzero.core.wire import is_float_dtype

log = structlog.get_logger(__name__)

MetricsAggrFn = Callable[[list[RecordDict], str], MetricRecord]


def valid_replies(replies: Iterable[Message], *, phase: str) -> list[Message]:
    """The replies that carry content, ordered by source node id (errors logged)."""
    good: list[Message] = []
    for msg in replies:
        if msg.has_error():
            log.info(
                "reply_error",
                phase=phase,
                node_id=msg.metadata.src_node_id,
                reason=msg.error.reason,
            )
        else:
            good.append(msg)
    return sorted(good, key=lambda m: m.metadata.src_node_id)


def weighted_only(replies: list[Message], key: str, *, phase: str) -> list[Message]:
    """The replies whose first MetricRecord holds a usable weight ``key`` (others logged).

    A reply without one is left out, never counted as 1 (as the link does).
    """
    kept = []
    for msg in replies:
        try:
            _weight(msg.content, key)
            kept.append(msg)
        except ValueError as exc:
            node = msg.metadata.src_node_id
            log.warning("reply_without_weight", phase=phase, node_id=node, reason=str(exc))
    return kept


def array_record(content: RecordDict) -> ArrayRecord:
    """The one ArrayRecord of a reply (Flower: exactly one is expected)."""
    records = list(content.array_records.values())
    if len(records) != 1:
        raise ValueError(f"expected exactly one ArrayRecord in a reply, got {len(records)}")
    return records[0]


def _weight(content: RecordDict, key: str) -> float:
    metrics = list(content.metric_records.values())
    if not metrics:
        raise ValueError(f"a reply has no MetricRecord to read {key!r} from")
    value = metrics[0].get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"reply metric {key!r} must be a finite number, got {value!r}")
    if not value > 0:
        raise ValueError(f"reply metric {key!r} must be > 0, got {value!r}")
    return float(value)


def _cast_back(mean: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A mean in the dtype of the inputs (integers rounded, booleans by majority)."""
    if is_float_dtype(like.dtype):
        return np.asarray(mean).astype(like.dtype, copy=False)
    if like.dtype == np.bool_:
        return np.asarray(mean >= 0.5)
    return np.asarray(np.rint(mean)).astype(like.dtype)


def aggregate_arrayrecords(
    records: Sequence[RecordDict], weighting_metric_name: str
) -> ArrayRecord:
    """Weighted mean of the replies' arrays (Flower's ``aggregate_arrayrecords``).

    Float arrays: ``sum(a_i * w_i / W)`` in the array's dtype, as Flower; other
    arrays: the same in float64, rounded back to their dtype.
    """
    weights = [_weight(r, weighting_metric_name) for r in records]
    total = sum(weights)
    if not total > 0:
        raise ValueError(f"the replies' {weighting_metric_name!r} add up to {total}")
    sums: dict[str, np.ndarray] = {}
    firsts: dict[str, np.ndarray] = {}
    for record, weight in zip(records, weights, strict=True):
        factor = weight / total
        for name, value in array_record(record).items():
            arr = np.asarray(value)
            term = arr * factor if is_float_dtype(arr.dtype) else arr.astype(np.float64) * factor
            if name in sums:
                sums[name] = sums[name] + term
            else:
                sums[name], firsts[name] = term, arr
    return ArrayRecord({k: _cast_back(v, firsts[k]) for k, v in sums.items()}, copy=False)


def aggregate_metricrecords(
    records: Sequence[RecordDict], weighting_metric_name: str
) -> MetricRecord:
    """Weighted mean of the replies' metrics; the weighting key itself is dropped.

    Flower's ``aggregate_metricrecords``: weights from each reply's first
    MetricRecord, every MetricRecord's keys averaged.
    """
    weights = [_weight(r, weighting_metric_name) for r in records]
    total = sum(weights)
    out: dict[str, Any] = {}
    if not total > 0:
        return MetricRecord()
    for record, weight in zip(records, weights, strict=True):
        factor = weight / total
        for metrics in record.metric_records.values():
            for key, value in metrics.items():
                if key == weighting_metric_name:
                    continue
                if isinstance(value, list):
                    prev = out.get(key, [0.0] * len(value))
                    out[key] = [p + v * factor for p, v in zip(prev, value, strict=True)]
                else:
                    out[key] = out.get(key, 0.0) + value * factor
    return MetricRecord(out)


def _stacks(records: Sequence[RecordDict]) -> dict[str, np.ndarray]:
    arrays = [array_record(r) for r in records]
    names = list(arrays[0].keys())
    for other in arrays[1:]:
        if list(other.keys()) != names:
            raise ValueError("all replies' ArrayRecords must hold the same arrays")
    return {n: np.stack([np.asarray(a[n]) for a in arrays]) for n in names}


def _per_array(
    records: Sequence[RecordDict], fn: Callable[[np.ndarray], np.ndarray]
) -> ArrayRecord:
    out = {}
    for name, stack in _stacks(records).items():
        wide = stack if is_float_dtype(stack.dtype) else stack.astype(np.float64)
        out[name] = _cast_back(fn(wide), stack[0])
    return ArrayRecord(out, copy=False)


def trim_mean(array: np.ndarray, cut_fraction: float) -> np.ndarray:
    """Flower's ``trim_mean``: cut ``int(cut_fraction * n)`` values per side, mean the rest."""
    if not 0.0 <= cut_fraction < 0.5:
        raise ValueError("cut fraction must be in [0, 0.5)")
    n = array.shape[0]
    low = int(cut_fraction * n)
    high = n - low
    part = np.partition(array, (low, high - 1), axis=0)
    result: np.ndarray = np.mean(part[low:high], axis=0)
    return result


def median_arrays(records: Sequence[RecordDict]) -> ArrayRecord:
    """Coordinate-wise median of the replies' arrays (Flower's FedMedian)."""
    return _per_array(records, lambda s: np.median(s, axis=0))


def trimmed_mean_arrays(records: Sequence[RecordDict], beta: float) -> ArrayRecord:
    """Coordinate-wise trimmed mean (Flower's FedTrimmedAvg)."""
    return _per_array(records, lambda s: trim_mean(s, beta))


def compute_distances(records: Sequence[ArrayRecord]) -> np.ndarray:
    """Squared L2 distances between flattened records (Flower's formula)."""
    flat = np.stack([np.concatenate([np.asarray(v).ravel() for v in r.values()]) for r in records])
    norms = np.square(flat).sum(axis=1)
    distances: np.ndarray = norms[:, None] + norms[None, :] - 2 * flat @ flat.T
    return distances


def select_multikrum(
    contents: Sequence[RecordDict], num_malicious_nodes: int, num_nodes_to_select: int
) -> list[RecordDict]:
    """The ``num_nodes_to_select`` replies with the lowest Krum scores.

    ``contents`` must be in node-id order (as :func:`valid_replies` returns
    them): equal scores keep that order (stable sort), so ties go to the
    lower node id.
    """
    records = [array_record(c) for c in contents]
    distances = compute_distances(records)
    closest = max(1, len(records) - num_malicious_nodes - 2)
    scores = []
    for i, row in enumerate(distances):  # as Flower: skip the smallest (the reply itself)
        nearest = np.argsort(row, kind="stable")[1 : closest + 1]
        scores.append(float(np.sum(distances[i, nearest])))
    best = np.argsort(np.asarray(scores), kind="stable")[:num_nodes_to_select]
    return [contents[int(i)] for i in best]


def aggregate_n_closest_weights(
    reference: Sequence[np.ndarray], weights_list: Sequence[Sequence[np.ndarray]], beta: int
) -> list[np.ndarray]:
    """Per coordinate, the mean of the ``beta`` values closest to ``reference`` (Bulyan)."""
    out = []
    for layer, ref in enumerate(reference):
        stack = np.stack([w[layer] for w in weights_list])
        idx = np.argpartition(np.abs(stack - ref), beta - 1, axis=0)[:beta]
        out.append(np.mean(np.take_along_axis(stack, idx, axis=0), axis=0))
    return out
