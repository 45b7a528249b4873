"""Link-side aggregation: replies are folded as they arrive; one result goes back.

The IO thread owns every :class:`AggregatedRound`'s bookkeeping; the numeric
work (begin, fold, finish) runs on one fold worker thread, which reports back
through a queue and a wake-up message. The worker folds straight from the
received frame buffers (read-only views), so a reply's memory is released as
soon as it is folded, and with it the reply's upload credit.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import structlog
import zmq

from fedzero.core import (
    ArrayRecord,
    ConfigRecord,
    DeserializationError,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)
from fedzero.core.wire import new_message_id

log = structlog.get_logger(__name__)

METHODS: Final = ("fedavg", "trimmed_mean", "median", "krum", "multikrum")
_FLOATS: Final = ("float16", "bfloat16", "float32", "float64")


@dataclasses.dataclass(frozen=True, slots=True)
class AggregateSpec:
    """How the link aggregates one round (the ``aggregate`` field of a push).

    Attributes:
        round_id: id the result message answers (``reply_to_message_id``).
        method: ``fedavg``, ``trimmed_mean``, ``median``, ``krum`` or ``multikrum``.
        arrays_key: the ArrayRecord of each reply to aggregate.
        weight_key: the metric holding each reply's weight (``""``: weight 1).
        beta: fraction cut per side (trimmed_mean).
        num_malicious: ``f`` of Krum / Multi-Krum.
        num_selected: ``m`` of Multi-Krum (Krum: 1).
        accumulator: ``"float32"``, ``"float64"`` or ``""`` (by the model's dtype).
        reject_non_finite: refuse updates holding NaN or infinity.
        clip_norm: clip each update's delta to this L2 norm (fedavg; 0: off).
        min_replies: with ``deadline``, finish once this many replies are folded.
        deadline: seconds after the push at which to finish with what is there
            (0: wait for every reply or failure).
    """

    round_id: str
    method: str = "fedavg"
    arrays_key: str = "arrays"
    weight_key: str = "num-examples"
    beta: float = 0.2
    num_malicious: int = 0
    num_selected: int = 1
    accumulator: str = ""
    reject_non_finite: bool = True
    clip_norm: float = 0.0
    min_replies: int = 1
    deadline: float = 0.0

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> AggregateSpec:
        """Validate the ``aggregate`` object of a push.

        Raises:
            DeserializationError: a field is unknown, missing or out of range.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(raw) - set(fields)
        if unknown:
            raise DeserializationError(f"push.aggregate: unknown fields {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, field in fields.items():
            if name not in raw:
                if name == "round_id":
                    raise DeserializationError("push.aggregate needs a round_id")
                continue
            value, kind = raw[name], type(field.default) if name != "round_id" else str
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
                raise DeserializationError(f"push.aggregate.{name} must be {kind.__name__}")
            values[name] = value
        spec = cls(**values)
        spec._check()
        return spec

    def _check(self) -> None:
        problems = {
            "method": self.method not in METHODS,
            "round_id": not 0 < len(self.round_id) <= 128,
            "beta": not 0.0 <= self.beta < 0.5,
            "num_malicious": self.num_malicious < 0,
            "num_selected": self.num_selected < 1,
            "accumulator": self.accumulator not in ("", "float32", "float64"),
            "clip_norm": not (math.isfinite(self.clip_norm) and self.clip_norm >= 0),
            "min_replies": self.min_replies < 0,
            "deadline": not (math.isfinite(self.deadline) and self.deadline >= 0),
        }
        bad = [name for name, wrong in problems.items() if wrong]
        if bad:
            raise DeserializationError(f"push.aggregate: invalid {', '.join(bad)}")


@dataclasses.dataclass(slots=True)
class AggregatedRound:
    """Bookkeeping of one aggregated round (IO thread only)."""

    spec: AggregateSpec
    run_id: int
    app_routing_id: bytes
    template: Metadata
    expected: int
    started: float = dataclasses.field(default_factory=time.monotonic)
    resolved: int = 0
    folded: int = 0
    queued: int = 0
    finishing: bool = False
    failures: dict[int, tuple[int, str]] = dataclasses.field(default_factory=dict)
    node_metrics: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def complete(self, now: float) -> bool:
        """Whether the completion rule holds (and no fold is still queued)."""
        if self.finishing or self.queued:
            return False
        if self.resolved >= self.expected:
            return True
        late = self.spec.deadline > 0 and now - self.started >= self.spec.deadline
        return late and self.folded >= self.spec.min_replies


class FoldWorker:
    """One thread that does every round's numeric work, in arrival order.

    Jobs go in with :meth:`submit`; outcomes come back on :attr:`done` and the
    worker wakes the IO thread by sending ``b"work"`` to ``wake_address``.
    """

    def __init__(
        self, ctx: zmq.Context[zmq.Socket[bytes]], wake_address: str, warm: bool = True
    ) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._ctx = ctx
        self._wake_address = wake_address
        self._warm = warm
        self._thread = threading.Thread(target=self._run, name="fedzero-fold", daemon=True)
        self._thread.start()

    def submit(self, *job: Any) -> None:
        """Queue a job: ``(kind, round_id, ...)``."""
        self._jobs.put(job)

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued jobs and stop the thread."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        from ._folding import RoundState, warmup

        wake = self._ctx.socket(zmq.PUSH)
        wake.connect(self._wake_address)
        states: dict[str, RoundState] = {}
        try:
            if self._warm:
                warmup()
            lookahead: list[tuple[Any, ...] | None] = []  # a job taken early, handled next
            while (job := lookahead.pop() if lookahead else self._jobs.get()) is not None:
                batch = [job]
                nxt: tuple[Any, ...] | None = None
                while job[0] == "fold":  # several replies ready: fold them in one pass
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None or nxt[0] != "fold":
                        lookahead.append(nxt)  # strictly next: a round's begin must stay
                        break  # ahead of its folds, whatever other runs interleave
                    batch.append(nxt)
                outcomes = RoundState.process(states, batch)
                # Drop our references to the folded replies before waiting for more
                # work: their received frames are freed now, not after the next job.
                del batch, job, nxt
                for outcome in outcomes:
                    self.done.put(outcome)
                wake.send(b"work")
        finally:
            wake.close(linger=1000)


def result_message(
    rnd: AggregatedRound, arrays: dict[str, np.ndarray] | None, metrics: dict[str, Any]
) -> Message:
    """Build the one message that answers an aggregated round."""
    now = time.time()
    meta = dataclasses.replace(
        rnd.template, message_id=new_message_id(), src_node_id=0, dst_node_id=0,
        reply_to_message_id=rnd.spec.round_id, created_at=now,
        ttl=max(0.0, rnd.template.created_at + rnd.template.ttl - now),
    )  # fmt: skip
    content = RecordDict()
    if arrays is not None:
        content[rnd.spec.arrays_key] = ArrayRecord(arrays)
    content["metrics"] = MetricRecord(metrics)
    failed = sorted(rnd.failures)
    content["round"] = ConfigRecord({
        "replies": rnd.folded,
        "nodes": sorted(rnd.node_metrics),
        "failed-nodes": failed,
        "failure-codes": [rnd.failures[n][0] for n in failed],
        "failure-reasons": [rnd.failures[n][1] for n in failed],
    })  # fmt: skip
    for node_id, node_metrics in sorted(rnd.node_metrics.items()):
        content[f"node/{node_id}"] = MetricRecord(node_metrics)
    return Message.from_parts(meta, content, None)
