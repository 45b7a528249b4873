"""The IO thread's side of link-side aggregation: which replies go into which round.

A :class:`RoundBook` owns every :class:`~._aggregated.AggregatedRound`:
it hands usable replies to the fold worker, records failures (node offline,
expiry, app errors, rejected updates), applies the completion rule, and sends
the one result message when the worker has finished. It talks to the router
only through the callables it is given.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from fedzero.core import (
    ArrayRecord,
    DeserializationError,
    ErrorCode,
    Message,
    Metadata,
    RecordDict,
    encode,
)

from .._state import Pending, PendingTable
from ..store import StoreWriter
from ._aggregated import AggregatedRound, result_message
from ._spec import AggregateSpec
from ._worker import FoldWorker

log = structlog.get_logger(__name__)


class RoundBook:
    """Aggregated rounds in progress.

    Args:
        worker: the fold worker.
        store: where round events and timings are recorded.
        stats: the link's counters.
        pending: the router's table of messages awaiting replies.
        release: release a reply's upload credit (and grant waiting uploads).
        to_app: send frames to a ServerApp; False if it is gone.
        counters: a run's traffic counters (run fields), recorded with each of its rounds.
        checkpoint_dir: where round checkpoints go (None: nowhere).
        retention: checkpoints kept per run (0: all).
    """

    def __init__(
        self,
        *,
        worker: FoldWorker,
        store: StoreWriter,
        stats: Counter[str],
        pending: PendingTable,
        release: Callable[[str], None],
        to_app: Callable[[bytes, list[Any]], bool],
        counters: Callable[[int], dict[str, int]],
        checkpoint_dir: Path | None,
        retention: int,
    ) -> None:
        self.rounds: dict[str, AggregatedRound] = {}
        self._worker = worker
        self._store = store
        self._stats = stats
        self._pending = pending
        self._release = release
        self._to_app = to_app
        self._counters = counters
        self._checkpoint_dir = checkpoint_dir
        self._retention = retention

    def __bool__(self) -> bool:
        return bool(self.rounds)

    def begin(
        self,
        spec: AggregateSpec,
        run_id: int,
        app_rid: bytes,
        template: Metadata,
        content: RecordDict,
        expected: int,
    ) -> None:
        """Start a round over the pushed model.

        Raises:
            DeserializationError: the round id is taken, or the push has no model.
        """
        if spec.round_id in self.rounds:
            raise DeserializationError(f"push.aggregate: round {spec.round_id!r} already exists")
        record = content.get(spec.arrays_key)
        if not isinstance(record, ArrayRecord):
            raise DeserializationError(
                f"push.aggregate: no ArrayRecord {spec.arrays_key!r} to aggregate"
            )
        self.rounds[spec.round_id] = AggregatedRound(spec, run_id, app_rid, template, expected)
        self._worker.submit("begin", spec.round_id, spec, dict(record), expected)

    def on_reply(self, entry: Pending, reply: Message) -> None:
        """A node answered a message of the round: fold it, or count why not."""
        rnd = self.rounds.get(entry.round_id)
        if rnd is None or rnd.finishing:
            self._release(entry.message_id)
            return
        update = _update_of(reply, rnd.spec) if reply.has_content() else None
        if not isinstance(update, tuple):
            self._release(entry.message_id)
            if reply.has_error():
                self.on_failure(entry.round_id, entry.node_id, reply.error.code, reply.error.reason)
            else:
                self.on_failure(entry.round_id, entry.node_id, ErrorCode.REJECTED, str(update))
            return
        arrays, weight, metrics = update
        rnd.queued += 1
        rnd.node_metrics[entry.node_id] = metrics
        self._worker.submit(
            "fold", entry.round_id, entry.message_id, entry.node_id, arrays, weight, metrics
        )

    def on_failure(self, round_id: str, node_id: int, code: int, reason: str) -> None:
        """A node's part of the round failed."""
        rnd = self.rounds.get(round_id)
        if rnd is None:
            return
        rnd.failures[node_id] = (int(code), reason)
        rnd.node_metrics.pop(node_id, None)
        rnd.resolved += 1
        self.check(round_id)

    def on_worker(self, outcome: tuple[Any, ...]) -> None:
        """The fold worker folded (or rejected) a reply, or finished a round."""
        kind, round_id = outcome[0], outcome[1]
        rnd = self.rounds.get(round_id)
        if kind == "folded":
            _, _, reply_to, node_id, problem = outcome
            self._release(reply_to)
            if rnd is None:
                return
            rnd.queued -= 1
            if problem is None:
                rnd.folded += 1
                rnd.resolved += 1
                self.check(round_id)
            else:
                self._stats["replies_rejected"] += 1
                log.warning("update_rejected", run_id=rnd.run_id, node_id=node_id, reason=problem)
                self.on_failure(round_id, node_id, ErrorCode.REJECTED, problem)
        elif kind == "failed":
            self._fail(round_id, outcome[2])
        elif kind == "finished" and rnd is not None:
            del self.rounds[round_id]
            _, _, arrays, metrics, problem = outcome
            if problem is not None:
                rnd.failures[0] = (int(ErrorCode.REJECTED), problem)
            self._to_app(rnd.app_routing_id, encode(result_message(rnd, arrays, metrics)))
            self._record(rnd)

    def _fail(self, round_id: str, cause: str) -> None:
        """The fold worker could not aggregate the round: its ServerApp gets the cause."""
        rnd = self.rounds.pop(round_id, None)
        if rnd is None:
            return
        for entry in self._pending.pop_round(round_id):
            self._release(entry.message_id)
        self._stats["rounds_failed"] += 1
        rnd.failures[0] = (int(ErrorCode.AGGREGATION_FAILED), cause)
        self._worker.submit("drop", round_id)
        self._to_app(rnd.app_routing_id, encode(result_message(rnd, None, {})))
        self._record(rnd)

    def _record(self, rnd: AggregatedRound) -> None:
        secs = time.monotonic() - rnd.started
        self._stats["aggregation_us"] += int(secs * 1e6)
        failed = {str(n): reason[:300] for n, (_, reason) in rnd.failures.items()}
        group, failures = rnd.template.group_id, len(rnd.failures)
        summary = {
            "round": group,
            "method": rnd.spec.method,
            "replies": rnd.folded,
            "failures": failures,
        }
        data = {**summary, "failed": failed, "secs": round(secs, 4)}
        self._store.add_event("round_aggregated", time.time(), run_id=rnd.run_id, data=data)
        if group.isdigit():
            self._store.upsert_round(
                rnd.run_id,
                int(group),
                {},
                time.time(),
                round_secs=secs,
                replies=rnd.folded,
                failures=failures,
                nodes=sorted({*rnd.node_metrics, *rnd.failures} - {0}),
                counters=self._counters(rnd.run_id),
            )
        log.info("round_aggregated", run_id=rnd.run_id, **summary, secs=round(secs, 4))

    def check(self, round_id: str, force: bool = False) -> None:
        """Finish the round if its completion rule holds (or ``force``)."""
        rnd = self.rounds.get(round_id)
        if rnd is None or rnd.finishing or not (force or rnd.complete(time.monotonic())):
            return
        rnd.finishing = True
        for entry in self._pending.pop_round(round_id):
            self._release(entry.message_id)
            rnd.failures[entry.node_id] = (
                int(ErrorCode.MESSAGE_EXPIRED),
                "the round's deadline passed",
            )
        self._worker.submit("finish", round_id, self._checkpoint_job(rnd))

    def check_all(self, force: bool = False) -> None:
        """Apply the completion rule to every round (timers, shutdown)."""
        for round_id in list(self.rounds):
            self.check(round_id, force)

    def drop_run(self, run_id: int) -> None:
        """Forget the run's rounds (the run ended): the worker frees their state."""
        for round_id in [k for k, r in self.rounds.items() if r.run_id == run_id]:
            del self.rounds[round_id]
            self._worker.submit("drop", round_id)

    def next_deadline(self) -> float:
        """Seconds until the earliest round deadline (inf: none)."""
        now = time.monotonic()
        deadlines = [
            r.started + r.spec.deadline - now
            for r in self.rounds.values()
            if r.spec.deadline > 0 and not r.finishing
        ]
        return min(deadlines, default=float("inf"))

    def _checkpoint_job(self, rnd: AggregatedRound) -> tuple[Any, ...] | None:
        """Where the fold worker saves this round's global model, if anywhere."""
        if self._checkpoint_dir is None or not rnd.template.group_id.isdigit():
            return None
        group = int(rnd.template.group_id)
        return (self._checkpoint_dir, rnd.run_id, group, self._retention, rnd.spec.round_id)


def _update_of(
    reply: Message, spec: AggregateSpec
) -> tuple[dict[str, Any], float, dict[str, Any]] | str:
    """The (arrays, weight, metrics) a reply contributes, or why it cannot.

    The router already refused replies without a usable weight; a missing weight
    is still never taken as 1 here.
    """
    metrics = _node_metrics(reply)
    record = reply.content.get(spec.arrays_key)
    if not isinstance(record, ArrayRecord):
        return f"the reply has no ArrayRecord {spec.arrays_key!r}"
    if not spec.weight_key:
        return dict(record), 1.0, metrics
    weight = metrics.get(spec.weight_key)
    if weight is None or isinstance(weight, list) or not weight > 0:
        return f"metric {spec.weight_key!r} must be a positive number, got {weight!r:.30}"
    return dict(record), float(weight), metrics


def _node_metrics(reply: Message) -> dict[str, Any]:
    """A reply's metrics by name.

    A name held by several records is kept once per record, as ``<record>/<name>``,
    so no record's value silently wins.
    """
    records = reply.content.metric_records
    if len(records) <= 1:  # the usual reply: no name can clash, no counting per reply
        return {name: value for rec in records.values() for name, value in rec.items()}
    held = Counter(name for rec in records.values() for name in rec)
    return {
        name if held[name] == 1 else f"{key}/{name}": value
        for key, rec in records.items()
        for name, value in rec.items()
    }
