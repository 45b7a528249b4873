"""The rounds loop of :meth:`Strategy.start` (Flower's ``Strategy.start``), hook by hook.

Works on anything with the hooks (:class:`Hooks`): the strategies and the DP
wrappers. A train round goes to the link with an aggregate spec when the
strategy gives one (``link_spec``) and its messages share one content; the
link then aggregates as replies arrive and ``aggregate_link_round`` turns the
result into the round's arrays and metrics. Otherwise the replies come back
and ``aggregate_train`` gets them, as in Flower.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import structlog

from fedzero.core import (
    ArrayRecord,
    ConfigRecord,
    Error,
    ErrorCode,
    Grid,
    Message,
    MetricRecord,
    RoundResult,
)

from ._result import Result

log = structlog.get_logger(__name__)

EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | Mapping[str, Any] | None]


class Hooks(Protocol):
    """What the loop calls (Flower's Strategy hooks plus fedzero's link ones)."""

    def summary(self) -> None: ...

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]: ...

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]: ...

    def link_spec(self) -> dict[str, Any] | None: ...

    def aggregate_link_round(
        self, server_round: int, outcome: RoundResult
    ) -> tuple[ArrayRecord | None, MetricRecord | None]: ...

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]: ...

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None: ...

    def report_metrics(self, server_round: int) -> dict[str, float]: ...


def run_strategy(
    strategy: Hooks,
    grid: Grid,
    initial_arrays: ArrayRecord,
    num_rounds: int,
    timeout: float | None,
    train_config: ConfigRecord | None,
    evaluate_config: ConfigRecord | None,
    evaluate_fn: EvaluateFn | None,
) -> Result:
    """Run the rounds; see :meth:`fedzero.aggregation.Strategy.start`."""
    strategy.summary()
    train_config = ConfigRecord() if train_config is None else train_config
    evaluate_config = ConfigRecord() if evaluate_config is None else evaluate_config
    result = Result(arrays=initial_arrays)
    _central(evaluate_fn, 0, initial_arrays, result)
    for server_round in range(1, num_rounds + 1):
        started = time.monotonic()
        messages = list(strategy.configure_train(server_round, result.arrays, train_config, grid))
        arrays, metrics = _train(strategy, grid, server_round, messages, timeout, result)
        result.round_seconds[server_round] = time.monotonic() - started
        if arrays is not None:
            result.arrays = arrays
        if metrics is not None:
            result.train_metrics_clientapp[server_round] = metrics
        messages = list(
            strategy.configure_evaluate(server_round, result.arrays, evaluate_config, grid)
        )
        replies = grid.send_and_receive(messages, timeout=timeout) if messages else []
        evaluated = strategy.aggregate_evaluate(server_round, replies)
        if evaluated is not None:
            result.evaluate_metrics_clientapp[server_round] = evaluated
        _central(evaluate_fn, server_round, result.arrays, result)
        summary = {**_round_summary(result, server_round), **strategy.report_metrics(server_round)}
        grid.report(server_round, summary)
    return result


def _train(
    strategy: Hooks,
    grid: Grid,
    server_round: int,
    messages: list[Message],
    timeout: float | None,
    result: Result,
) -> tuple[ArrayRecord | None, MetricRecord | None]:
    if not messages:
        log.warning("no_nodes_for_training", round=server_round)
        return strategy.aggregate_train(server_round, [])
    spec = strategy.link_spec()
    shared = all(m.content is messages[0].content for m in messages)
    if spec is not None and shared:
        outcome = grid.send_and_receive(messages, aggregate=spec, timeout=timeout)
        _failures(result, server_round, outcome.failures)
        log.info(
            "train_round_done",
            round=server_round,
            replies=outcome.replies,
            failures=len(outcome.failures),
            method=spec.get("method"),
        )
        return strategy.aggregate_link_round(server_round, outcome)
    replies = grid.send_and_receive(messages, timeout=timeout)
    failed = {m.metadata.src_node_id: m.error for m in replies if m.has_error()}
    answered = {m.metadata.src_node_id for m in replies}
    for msg in messages:  # no reply at all by the timeout
        if msg.metadata.dst_node_id not in answered:
            failed[msg.metadata.dst_node_id] = Error(
                ErrorCode.MESSAGE_EXPIRED, "no reply before the round's timeout"
            )
    _failures(result, server_round, failed)
    log.info("train_round_done", round=server_round, replies=len(replies), failures=len(failed))
    return strategy.aggregate_train(server_round, replies)


def _failures(result: Result, server_round: int, failures: Mapping[int, Error]) -> None:
    if failures:
        result.train_failures[server_round] = dict(failures)


def _central(fn: EvaluateFn | None, server_round: int, arrays: ArrayRecord, result: Result) -> None:
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
            if not isinstance(value, list):
                summary[f"{prefix}{key}"] = value
    summary["failures"] = len(result.train_failures.get(server_round, {}))
    return summary
