"""Strategies that aggregate on the ServerApp: Bulyan and q-FedAvg (Flower's).

Neither has a streaming form on the link (Bulyan needs every reply twice, q-FedAvg
each reply's loss next to its update), so their rounds bring the replies back
and ``aggregate_arrays`` does Flower 1.42's arithmetic in NumPy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import structlog

from fedzero.core import ArrayRecord, ConfigurationError, RecordDict
from fedzero.core.wire import is_float_dtype

from ._aggregate import aggregate_n_closest_weights, array_record, select_multikrum
from ._strategy import Strategy

log = structlog.get_logger(__name__)

SelectionRule = Callable[[list[RecordDict], int, int], list[RecordDict]]


def _cast(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    if is_float_dtype(like.dtype):
        return np.asarray(values).astype(like.dtype, copy=False)
    return np.asarray(np.rint(values)).astype(like.dtype)


@dataclasses.dataclass
class Bulyan(Strategy):
    """Bulyan (El Mhamdi et al. 2018): Multi-Krum selection, then a trimmed median.

    Needs at least ``4 * num_malicious_nodes + 3`` replies (else the round has
    no result, as in Flower).

    Args:
        num_malicious_nodes: ``f``, Byzantine nodes tolerated.
        selection_rule: ``(contents, f, theta) -> selected`` (default Multi-Krum).
    """

    num_malicious_nodes: int = 0
    selection_rule: SelectionRule | None = None

    def aggregate_spec(self) -> dict[str, Any] | None:
        """None: Bulyan runs on the ServerApp."""
        return None

    def aggregate_arrays(
        self, server_round: int, contents: Sequence[RecordDict]
    ) -> tuple[ArrayRecord | None, list[RecordDict]]:
        """Select ``theta = n - 2f`` replies; mean the ``theta - 2f`` closest to their median."""
        f = self.num_malicious_nodes
        if len(contents) < 4 * f + 3:
            log.warning("bulyan_too_few_replies", round=server_round, replies=len(contents), f=f)
            return None, []
        theta = len(contents) - 2 * f
        beta = theta - 2 * f
        rule = self.selection_rule or select_multikrum
        selected = rule(list(contents), f, theta)
        records = [array_record(c) for c in selected]
        names = list(records[0].keys())
        stacks = [[np.asarray(r[n], np.float64) for n in names] for r in records]
        medians = [np.median(np.stack(layer), axis=0) for layer in zip(*stacks, strict=True)]
        out = aggregate_n_closest_weights(medians, stacks, beta)
        first = records[0]
        arrays = ArrayRecord(
            {n: _cast(v, first[n]) for n, v in zip(names, out, strict=True)}, copy=False
        )
        return arrays, selected


@dataclasses.dataclass(kw_only=True)
class QFedAvg(Strategy):
    """q-FedAvg (Li et al. 2020): fair aggregation weighting nodes by ``loss^q``.

    Args:
        client_learning_rate: the nodes' learning rate (``L = 1 / lr``).
        q: fairness exponent (0 is FedAvg-like).
        train_loss_key: the reply metric holding each node's training loss.
    """

    client_learning_rate: float
    q: float = 0.1
    train_loss_key: str = "train_loss"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.client_learning_rate > 0:
            raise ConfigurationError("client_learning_rate must be positive")

    def aggregate_spec(self) -> dict[str, Any] | None:
        """None: q-FedAvg runs on the ServerApp."""
        return None

    def aggregate_arrays(
        self, server_round: int, contents: Sequence[RecordDict]
    ) -> tuple[ArrayRecord | None, list[RecordDict]]:
        """``w - sum(delta_k) / sum(h_k)`` (Flower's ``compute_delta_and_h``)."""
        current = self.current_arrays
        if not current:
            raise ValueError("q-FedAvg needs the model sent this round (configure_train)")
        lipschitz = 1.0 / self.client_learning_rate
        names = list(current.keys())
        globals_ = [np.asarray(current[n], np.float64) for n in names]
        sum_delta = [np.zeros_like(g) for g in globals_]
        sum_h = 0.0
        for content in contents:
            local = array_record(content)
            loss = self._loss(content)
            grads = [
                lipschitz * (g - np.asarray(local[n], np.float64))
                for g, n in zip(globals_, names, strict=True)
            ]
            norm = float(sum(np.sum(np.square(g)) for g in grads))
            loss_q = float(np.float_power(loss + 1e-10, self.q))
            for total, grad in zip(sum_delta, grads, strict=True):
                total += loss_q * grad
            sum_h += self.q * float(np.float_power(loss + 1e-10, self.q - 1)) * norm
            sum_h += lipschitz * loss_q
        new = {
            n: _cast(g - d / sum_h, current[n])
            for n, g, d in zip(names, globals_, sum_delta, strict=True)
        }
        return ArrayRecord(new, copy=False), list(contents)

    def _loss(self, content: RecordDict) -> float:
        metrics = list(content.metric_records.values())
        loss = metrics[0].get(self.train_loss_key) if metrics else None
        if isinstance(loss, bool) or not isinstance(loss, int | float):
            raise ValueError(
                f"q-FedAvg needs each reply's training loss as a number under "
                f"{self.train_loss_key!r} in its MetricRecord"
            )
        return float(loss)
