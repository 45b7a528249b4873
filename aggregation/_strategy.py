"""Strategy: how a ServerApp runs federated rounds (Flower's names and semantics).

A strategy samples nodes, sends them the model, lets the link aggregate the
replies as they arrive (one :class:`~fedzero.core.RoundResult` per round),
turns the aggregate into the next global model, optionally evaluates, and
records the history. ``start`` is the entry point a ServerApp calls.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import structlog

from fedzero.core import (
    ArrayRecord,
    ConfigRecord,
    ConfigurationError,
    Error,
    Grid,
    Message,
    MetricRecord,
    RecordDict,
)
from fedzero.core.wire import is_float_dtype

from ._metrics import weighted_metrics_mean

log = structlog.get_logger(__name__)

EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | Mapping[str, Any] | None]


@dataclasses.dataclass(slots=True)
class Result:
    """What :meth:`Strategy.start` returns.

    Attributes:
        arrays: the final global model.
        train_metrics_clientapp: per round, the nodes' train metrics (averaged).
        evaluate_metrics_clientapp: per round, the nodes' evaluate metrics (averaged).
        evaluate_metrics_serverapp: per round (0 = initial model), ``evaluate_fn``'s metrics.
        train_failures: per round, the nodes that failed and why.
        round_seconds: per round, the wall time of the train round.
    """

    arrays: ArrayRecord
    train_metrics_clientapp: dict[int, MetricRecord] = dataclasses.field(default_factory=dict)
    evaluate_metrics_clientapp: dict[int, MetricRecord] = dataclasses.field(default_factory=dict)
    evaluate_metrics_serverapp: dict[int, MetricRecord] = dataclasses.field(default_factory=dict)
    train_failures: dict[int, dict[int, Error]] = dataclasses.field(default_factory=dict)
    round_seconds: dict[int, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class _Session:
    """What every round of one :meth:`Strategy.start` call works with."""

    grid: Grid
    result: Result
    timeout: float | None
    train_config: ConfigRecord | None
    evaluate_config: ConfigRecord | None


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
        min_train_replies: with a ``timeout``, aggregate once this many replies
            are in when the timeout passes (default: wait for every node).
        accumulator: ``"float32"`` or ``"float64"`` sums ("" picks by dtype).
        seed: seed for node sampling (None: random).
        privacy: differential-privacy policy (the DP wrappers set it).

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
    min_train_replies: int = 1
    accumulator: str = ""
    seed: int | None = None
    privacy: FixedClipping | None = None
    _rng: random.Random = dataclasses.field(init=False, repr=False, default_factory=random.Random)
    _noise: np.random.Generator = dataclasses.field(
        init=False, repr=False, default_factory=np.random.default_rng
    )

    def __post_init__(self) -> None:
        for name in ("fraction_train", "fraction_evaluate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(f"{name} must be in [0, 1], got {value}")
        for name in ("min_train_nodes", "min_evaluate_nodes", "min_available_nodes"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)}")
        self._rng = random.Random(self.seed)  # noqa: S311 - sampling, not crypto
        self._noise = np.random.default_rng(self.seed)

    # ----------------------------------------------------------- the hooks

    def aggregate_spec(self) -> dict[str, Any]:
        """How the link aggregates train replies (see ``Grid.send_and_receive``)."""
        return {"method": "fedavg"}

    def train_config(self, server_round: int, config: ConfigRecord) -> ConfigRecord:
        """The config sent with train messages (adds ``server-round``)."""
        return ConfigRecord({**config, "server-round": server_round})

    def update_global(
        self, server_round: int, current: ArrayRecord, aggregated: ArrayRecord
    ) -> ArrayRecord:
        """Turn the round's aggregate into the next global model (FedAvg: take it)."""
        return aggregated

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
        result = Result(arrays=initial_arrays)
        session = _Session(grid, result, timeout, train_config, evaluate_config)
        self._central(evaluate_fn, 0, initial_arrays, result)
        for server_round in range(1, num_rounds + 1):
            started = time.monotonic()
            arrays = self._train_round(session, server_round)
            result.round_seconds[server_round] = time.monotonic() - started
            if arrays is not None:
                result.arrays = arrays
            self._evaluate_round(session, server_round)
            self._central(evaluate_fn, server_round, result.arrays, result)
            grid.report(server_round, _round_summary(result, server_round))
        return result

    def _sample(self, grid: Grid, fraction: float, minimum: int) -> list[int]:
        available = grid.get_node_ids(min_nodes=max(self.min_available_nodes, minimum), timeout=600)
        size = min(len(available), max(int(len(available) * fraction), minimum))
        return sorted(self._rng.sample(available, size))

    def _train_round(self, session: _Session, server_round: int) -> ArrayRecord | None:
        nodes = self._sample(session.grid, self.fraction_train, self.min_train_nodes)
        if not nodes:
            log.warning("no_nodes_for_training", round=server_round)
            return None
        config = self.train_config(server_round, session.train_config or ConfigRecord())
        if self.privacy is not None and self.privacy.client_side:
            config["clipping-norm"] = float(self.privacy.clipping_norm)
        messages = self._messages(session, "train", nodes, server_round, config)
        spec = self._train_spec()
        outcome = session.grid.send_and_receive(messages, aggregate=spec, timeout=session.timeout)
        result = session.result
        result.train_metrics_clientapp[server_round] = outcome.metrics
        if outcome.failures:
            result.train_failures[server_round] = outcome.failures
        failures = len(outcome.failures)
        log.info("train_round_done", round=server_round, replies=outcome.replies, failures=failures)
        if outcome.arrays is None:
            return None
        aggregated = outcome.arrays
        if self.privacy is not None:
            aggregated = self.privacy.add_noise(aggregated, self._noise)
        return self.update_global(server_round, result.arrays, aggregated)

    def _train_spec(self) -> dict[str, Any]:
        """The aggregate spec of a train round: the method plus this strategy's keys."""
        spec = {
            **self.aggregate_spec(),
            "arrays_key": self.arrayrecord_key,
            "weight_key": self.weighted_by_key,
            "accumulator": self.accumulator,
            "min_replies": self.min_train_replies,
        }
        if self.privacy is not None and not self.privacy.client_side:
            spec["clip_norm"] = float(self.privacy.clipping_norm)
        return spec

    def _messages(
        self,
        session: _Session,
        message_type: str,
        nodes: list[int],
        server_round: int,
        config: ConfigRecord,
    ) -> list[Message]:
        """One message per node with the current model, all sharing one content.

        The link receives the shared content once and fans it out.
        """
        records: dict[str, ArrayRecord | ConfigRecord] = {
            self.arrayrecord_key: session.result.arrays,
            self.configrecord_key: config,
        }
        content = RecordDict(records)
        group = str(server_round)
        create = session.grid.create_message
        return [create(content, message_type, n, group_id=group) for n in nodes]

    def _evaluate_round(self, session: _Session, server_round: int) -> None:
        if self.fraction_evaluate <= 0:
            return
        nodes = self._sample(session.grid, self.fraction_evaluate, self.min_evaluate_nodes)
        config = ConfigRecord({**(session.evaluate_config or {}), "server-round": server_round})
        messages = self._messages(session, "evaluate", nodes, server_round, config)
        replies = session.grid.send_and_receive(messages, timeout=session.timeout)
        answered = [r for r in replies if r.has_content()]
        metrics = _average_metrics(answered, self.weighted_by_key)
        session.result.evaluate_metrics_clientapp[server_round] = metrics

    def _central(
        self, fn: EvaluateFn | None, server_round: int, arrays: ArrayRecord, result: Result
    ) -> None:
        metrics = fn(server_round, arrays) if fn is not None else None
        if metrics is not None:
            result.evaluate_metrics_serverapp[server_round] = MetricRecord(dict(metrics))


def _round_summary(result: Result, server_round: int) -> dict[str, float | int]:
    """One line per round: central metrics, then the nodes' (prefixed), no lists."""
    parts = [
        ("", result.evaluate_metrics_serverapp.get(server_round)),
        ("train-", result.train_metrics_clientapp.get(server_round)),
        ("eval-", result.evaluate_metrics_clientapp.get(server_round)),
    ]
    summary: dict[str, float | int] = {}
    for prefix, metrics in parts:
        for key, value in (metrics or {}).items():
            if not isinstance(value, list) and key != "num-examples":
                summary[f"{prefix}{key}"] = value
    summary["failures"] = len(result.train_failures.get(server_round, {}))
    return summary


def _average_metrics(replies: list[Message], weight_key: str) -> MetricRecord:
    pairs = []
    for reply in replies:
        merged = {k: v for rec in reply.content.metric_records.values() for k, v in rec.items()}
        weight = merged.get(weight_key) if weight_key else 1
        if isinstance(weight, int | float) and math.isfinite(weight) and weight > 0:
            pairs.append((merged, float(weight)))
        else:  # never counted as 1: a reply without a usable weight is left out
            node = reply.metadata.src_node_id
            log.warning("evaluate_metrics_unweighted", node_id=node, weight_key=weight_key)
    try:
        return MetricRecord(weighted_metrics_mean(pairs)) if pairs else MetricRecord()
    except (TypeError, ValueError) as exc:
        log.warning("evaluate_metrics_not_averaged", reason=str(exc))
        return MetricRecord()


def float_arrays(arrays: ArrayRecord) -> dict[str, np.ndarray]:
    """The floating-point arrays of a record (what server optimizers update)."""
    return {k: v for k, v in arrays.items() if is_float_dtype(v.dtype)}


@dataclasses.dataclass(frozen=True)
class FixedClipping:
    """Fixed-clipping differential privacy (Andrew et al. 2021), as a policy.

    Server side: the link clips each update's distance to the sent model to
    ``clipping_norm`` before folding. Client side: the nodes clip (see
    :func:`fedzero.core.clip_update`) and the norm travels in the train config
    as ``"clipping-norm"``. Either way, Gaussian noise with standard deviation
    ``noise_multiplier * clipping_norm / num_sampled_clients`` is added to the
    aggregate.
    """

    noise_multiplier: float
    clipping_norm: float
    num_sampled_clients: int
    client_side: bool = False

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0 or self.clipping_norm <= 0 or self.num_sampled_clients < 1:
            raise ConfigurationError(
                "need noise_multiplier >= 0, clipping_norm > 0, num_sampled_clients >= 1"
            )

    def add_noise(self, arrays: ArrayRecord, rng: np.random.Generator) -> ArrayRecord:
        """Add the Gaussian noise to every float array."""
        std = self.noise_multiplier * self.clipping_norm / self.num_sampled_clients
        floats = float_arrays(arrays)
        noisy = {
            k: (v.astype(np.float64) + rng.normal(0.0, std, v.shape)).astype(v.dtype)
            if k in floats
            else v
            for k, v in arrays.items()
        }
        return ArrayRecord(noisy)
