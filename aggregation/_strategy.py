"""Strategy: how a ServerApp runs federated rounds (Flower's hooks and semantics).

:class:`Strategy` is FedAvg and the base of the strategies here. Its hooks are
Flower 1.42's (``configure_train``, ``aggregate_train``, ``configure_evaluate``,
``aggregate_evaluate``, ``summary``) and :meth:`Strategy.start` calls them
(the loop is in ``_loop.py``). A strategy whose ``aggregate_train`` is not
overridden lets the link aggregate the round as replies arrive
(:meth:`Strategy.link_spec`); a subclass that overrides it receives the replies,
as in Flower.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import structlog

from fedzero.core import (
    ArrayRecord,
    ConfigRecord,
    ConfigurationError,
    Grid,
    Message,
    MetricRecord,
    RecordDict,
    RoundResult,
)
from fedzero.core.wire import is_float_dtype

from ._aggregate import (
    MetricsAggrFn,
    aggregate_arrayrecords,
    aggregate_metricrecords,
    valid_replies,
    weighted_only,
)
from ._loop import EvaluateFn, run_strategy
from ._result import Result

log = structlog.get_logger(__name__)


@dataclasses.dataclass
class Strategy:
    """Federated averaging, and the base of every strategy here (FedAvg semantics).

    Args:
        fraction_train: fraction of available nodes sampled for training.
        fraction_evaluate: fraction sampled for evaluation (0 disables it).
        min_train_nodes: at least this many nodes train each round.
        min_evaluate_nodes: at least this many evaluate.
        min_available_nodes: wait until this many nodes are online.
        weighted_by_key: the reply metric that weights each node (e.g. examples).
        arrayrecord_key: record key of the model in messages.
        configrecord_key: record key of the config in messages.
        train_metrics_aggr_fn: ``(contents, weighted_by_key) -> MetricRecord`` for
            train replies (default: weighted mean without the weighting key).
        evaluate_metrics_aggr_fn: the same for evaluate replies.
        min_train_replies: with a ``timeout``, aggregate once this many replies
            are in when the timeout passes (default: wait for every node).
        accumulator: ``"float32"`` or ``"float64"`` sums ("" picks by dtype).
        seed: seed for node sampling (None: random).

    Raises:
        ConfigurationError: on a fraction outside [0, 1] or a negative minimum.
    """

    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    min_train_nodes: int = 2
    min_evaluate_nodes: int = 2
    min_available_nodes: int = 2
    weighted_by_key: str = "num-examples"
    arrayrecord_key: str = "arrays"
    configrecord_key: str = "config"
    train_metrics_aggr_fn: MetricsAggrFn | None = None
    evaluate_metrics_aggr_fn: MetricsAggrFn | None = None
    min_train_replies: int = 1
    accumulator: str = ""
    seed: int | None = None
    current_arrays: ArrayRecord = dataclasses.field(
        init=False, repr=False, default_factory=ArrayRecord
    )
    _rng: random.Random = dataclasses.field(init=False, repr=False, default_factory=random.Random)

    def __post_init__(self) -> None:
        for name in ("fraction_train", "fraction_evaluate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"{name} must be in [0, 1], got {value}")
        for name in ("min_train_nodes", "min_evaluate_nodes", "min_available_nodes"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.fraction_train == 0.0:  # as Flower: training skipped
            self.min_train_nodes = 0
        if self.fraction_evaluate == 0.0:
            self.min_evaluate_nodes = 0
        self._rng = random.Random(self.seed)  # noqa: S311 - sampling, not crypto

    # ----------------------------------------------------------- fedzero hooks

    def aggregate_spec(self) -> dict[str, Any] | None:
        """How the link aggregates train replies (None: on the ServerApp)."""
        return {"method": "fedavg"}

    def train_config(self, server_round: int, config: ConfigRecord) -> ConfigRecord:
        """The config sent with train messages (adds ``server-round``)."""
        return ConfigRecord({**config, "server-round": server_round})

    def update_global(
        self, server_round: int, current: ArrayRecord, aggregated: ArrayRecord
    ) -> ArrayRecord:
        """Turn the round's aggregate into the next global model (FedAvg: take it)."""
        return aggregated

    def aggregate_arrays(
        self, server_round: int, contents: Sequence[RecordDict]
    ) -> tuple[ArrayRecord | None, list[RecordDict]]:
        """Aggregate replies' arrays on the ServerApp; also return the replies used."""
        return aggregate_arrayrecords(contents, self.weighted_by_key), list(contents)

    def link_spec(self) -> dict[str, Any] | None:
        """The link-side aggregation of a train round, or None for raw replies.

        None when a subclass overrides ``aggregate_train`` (it gets the replies,
        as in Flower) or when :meth:`aggregate_spec` says so.
        """
        if type(self).aggregate_train is not Strategy.aggregate_train:
            return None
        spec = self.aggregate_spec()
        if spec is None:
            return None
        return {
            **spec,
            "arrays_key": self.arrayrecord_key,
            "weight_key": self.weighted_by_key,
            "accumulator": self.accumulator,
            "min_replies": self.min_train_replies,
        }

    def report_metrics(self, server_round: int) -> dict[str, float]:
        """Extra figures for the round's report (the DP wrappers add epsilon)."""
        return {}

    # ----------------------------------------------------------- Flower's hooks

    def summary(self) -> None:
        """Log the strategy's configuration."""
        fields = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.init and not callable(getattr(self, f.name))
        }
        log.info("strategy", name=type(self).__name__, **fields)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample nodes and build one train message each, all sharing one content."""
        self.current_arrays = arrays
        if self.fraction_train == 0.0:
            return []
        nodes = self._sample(grid, self.fraction_train, self.min_train_nodes)
        config["server-round"] = server_round
        return self._messages(grid, "train", nodes, arrays, self.train_config(server_round, config))

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate the replies' arrays and metrics (then apply :meth:`update_global`)."""
        valid = weighted_only(
            valid_replies(replies, phase="train"), self.weighted_by_key, phase="train"
        )
        if not valid:
            return None, None
        contents = [m.content for m in valid]
        try:
            arrays, used = self.aggregate_arrays(server_round, contents)
            metrics = self._train_metrics(used)
        except (TypeError, ValueError) as exc:
            log.warning("train_not_aggregated", round=server_round, reason=str(exc))
            return None, None
        if arrays is not None:
            arrays = self.update_global(server_round, self.current_arrays, arrays)
        return arrays, metrics

    def aggregate_link_round(
        self, server_round: int, outcome: RoundResult
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """What ``aggregate_train`` returns, from the link's aggregate of the round."""
        if outcome.replies == 0:
            return None, None
        if self.train_metrics_aggr_fn is not None:
            records = [RecordDict({"metrics": m}) for _, m in sorted(outcome.node_metrics.items())]
            metrics = self.train_metrics_aggr_fn(records, self.weighted_by_key)
        else:
            metrics = MetricRecord(
                {k: v for k, v in outcome.metrics.items() if k != self.weighted_by_key}
            )
        arrays = outcome.arrays
        if arrays is not None:
            arrays = self.update_global(server_round, self.current_arrays, arrays)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample nodes and build one evaluate message each."""
        if self.fraction_evaluate == 0.0:
            return []
        nodes = self._sample(grid, self.fraction_evaluate, self.min_evaluate_nodes)
        config["server-round"] = server_round
        return self._messages(grid, "evaluate", nodes, arrays, config)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Aggregate the replies' metrics (weighted mean without the weighting key)."""
        valid = valid_replies(replies, phase="evaluate")
        fn = self.evaluate_metrics_aggr_fn
        if fn is None:
            fn = aggregate_metricrecords
            valid = weighted_only(valid, self.weighted_by_key, phase="evaluate")
        if not valid:
            return None
        try:
            return fn([m.content for m in valid], self.weighted_by_key)
        except (TypeError, ValueError) as exc:
            log.warning("evaluate_not_aggregated", round=server_round, reason=str(exc))
            return None

    # ----------------------------------------------------------- the loop

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float | None = 3600.0,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: EvaluateFn | None = None,
    ) -> Result:
        """Run ``num_rounds`` rounds of training (and evaluation) on the grid.

        Args:
            grid: the run's Grid.
            initial_arrays: the starting global model.
            num_rounds: how many rounds.
            timeout: seconds a round may take; then the link aggregates what it has
                (at least ``min_train_replies``).
            train_config: sent to every node with each train message.
            evaluate_config: sent with each evaluate message.
            evaluate_fn: central evaluation ``(round, arrays) -> metrics``, called
                for the initial model (round 0) and after every round.

        Returns:
            The final model and the history.
        """
        return run_strategy(
            self,
            grid,
            initial_arrays,
            num_rounds,
            timeout,
            train_config,
            evaluate_config,
            evaluate_fn,
        )

    # ----------------------------------------------------------- helpers

    def _train_metrics(self, contents: list[RecordDict]) -> MetricRecord:
        fn = self.train_metrics_aggr_fn or aggregate_metricrecords
        return fn(contents, self.weighted_by_key)

    def _sample(self, grid: Grid, fraction: float, minimum: int) -> list[int]:
        available = grid.get_node_ids(min_nodes=max(self.min_available_nodes, minimum), timeout=600)
        size = min(len(available), max(int(len(available) * fraction), minimum))
        return sorted(self._rng.sample(available, size))

    def _messages(
        self,
        grid: Grid,
        message_type: str,
        nodes: list[int],
        arrays: ArrayRecord,
        config: ConfigRecord,
    ) -> list[Message]:
        """One message per node, all sharing one content (the link fans it out once)."""
        content = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        group = str(config.get("server-round", ""))
        return [grid.create_message(content, message_type, n, group_id=group) for n in nodes]


def float_arrays(arrays: ArrayRecord) -> dict[str, np.ndarray]:
    """The floating-point arrays of a record (what server optimizers update)."""
    return {k: v for k, v in arrays.items() if is_float_dtype(v.dtype)}
