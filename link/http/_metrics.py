"""Prometheus exposition of the link's statistics, read from a StatsSource at scrape time.

Nothing is counted twice: :class:`StatsCollector` keeps no state of its own. At
each scrape it asks the :class:`~._source.StatsSource` for a fresh
snapshot and turns it into metric families, so the link's counters stay the one
source of truth. It is registered on a private
:class:`prometheus_client.CollectorRegistry`, never on the global one, so two
links in one process (tests) do not clash.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ._source import StatsSource

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The classic Prometheus text format, which :func:`exposition` writes (every scraper reads it)."""
_PREFIX: Final = "fedzero"
_RUN_STATUSES: Final = ("running", "finished", "failed", "stopped", "interrupted")


class StatsCollector:
    """A Prometheus collector that reads a :class:`StatsSource` at every scrape.

    Args:
        source: where the statistics come from (called from the scraping thread).
    """

    def __init__(self, source: StatsSource) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        """No fixed description: the registry must not call :meth:`collect` at registration."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield one metric family per statistic of the current snapshot."""
        stats = self._source.stats()
        runs = self._source.runs()
        nodes = self._source.nodes()
        yield from _link_metrics(stats, nodes, runs)
        yield from _counter_metrics(stats)
        yield from self._run_metrics(runs)

    def _run_metrics(self, runs: list[dict[str, Any]]) -> Iterator[Metric]:
        """Per-run series, for running runs only (finished runs would grow without bound)."""
        rounds = GaugeMetricFamily(
            f"{_PREFIX}_run_rounds", "Rounds reported by a running run.", labels=["run_id"]
        )
        last = GaugeMetricFamily(
            f"{_PREFIX}_run_last_round_seconds",
            "Wall time of the last timed round of a running run.",
            labels=["run_id"],
        )
        for run in runs:
            if run.get("status") != "running":
                continue
            run_id = str(run["run_id"])
            rounds.add_metric([run_id], _number(run.get("rounds_done")))
            timed = [
                r
                for r in self._source.rounds(int(run["run_id"]))
                if _is_number(r.get("round_secs"))
            ]
            if timed:
                last.add_metric([run_id], float(timed[-1]["round_secs"]))
        yield rounds
        yield last


def _link_metrics(
    stats: Mapping[str, Any], nodes: list[dict[str, Any]], runs: list[dict[str, Any]]
) -> Iterator[Metric]:
    health = _mapping(stats.get("health"))
    healthy = 0.0 if health.get("healthy") is False else 1.0
    yield GaugeMetricFamily(
        f"{_PREFIX}_link_healthy",
        "1 while every thread of the link runs; 0 once one died (the watchdog stops).",
        value=healthy,
    )
    degraded = 1.0 if health.get("degraded") else 0.0
    yield GaugeMetricFamily(
        f"{_PREFIX}_link_degraded",
        "1 while the state store cannot write (new runs are refused).",
        value=degraded,
    )
    uptime = _number(stats.get("uptime_secs"))
    yield GaugeMetricFamily(
        f"{_PREFIX}_link_uptime_seconds", "Seconds since the link started.", value=uptime
    )
    online = sum(1 for n in nodes if n.get("online"))
    yield GaugeMetricFamily(f"{_PREFIX}_nodes_online", "Nodes connected now.", value=online)
    yield GaugeMetricFamily(
        f"{_PREFIX}_nodes_known", "Nodes ever registered (online or not).", value=len(nodes)
    )
    by_status = stats.get("runs_by_status")
    if not isinstance(by_status, Mapping):  # derive it from the runs the source lists
        by_status = {}
        for run in runs:
            by_status[run.get("status", "")] = by_status.get(run.get("status", ""), 0) + 1
    family = GaugeMetricFamily(f"{_PREFIX}_runs", "Runs by status.", labels=["status"])
    for status in sorted({*_RUN_STATUSES, *map(str, by_status)}):
        family.add_metric([status], _number(by_status.get(status)))
    yield family
    in_flight = _number(stats.get("credit_in_flight"))
    yield GaugeMetricFamily(
        f"{_PREFIX}_credit_in_flight", "Large uploads admitted and not yet folded.", value=in_flight
    )


def _counter_metrics(stats: Mapping[str, Any]) -> Iterator[Metric]:
    simple = (
        ("messages", "messages_sent", "Messages sent to nodes."),
        ("replies", "replies", "Replies received from nodes and accepted."),
        ("bytes_in", "received_bytes", "Bytes received from nodes."),
        ("bytes_out", "sent_bytes", "Bytes sent to nodes."),
        ("aggregation_secs", "aggregation_seconds", "Wall time of link-side aggregated rounds."),
    )
    for key, name, doc in simple:
        yield CounterMetricFamily(f"{_PREFIX}_{name}", doc, value=_number(stats.get(key)))
    labelled = (
        ("failures", "failures", "code", "Messages that failed, by error code."),
        ("replies_dropped", "replies_dropped", "reason", "Replies dropped, by reason."),
        ("malformed", "malformed_messages", "endpoint", "Malformed input, by endpoint."),
    )
    for key, name, label, doc in labelled:
        family = CounterMetricFamily(f"{_PREFIX}_{name}", doc, labels=[label])
        for value, count in sorted(_mapping(stats.get(key)).items()):
            family.add_metric([str(value)], _number(count))
        yield family


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: object) -> float:
    """A sample value: numbers as they are, anything missing or odd as 0."""
    return float(value) if _is_number(value) else 0.0  # type: ignore[arg-type]


def metrics_registry(source: StatsSource) -> CollectorRegistry:
    """Return a private registry holding one :class:`StatsCollector` of ``source``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(source))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Render ``registry`` in the Prometheus text format (version 0.0.4)."""
    return generate_latest(registry)
