"""The fold worker's per-round numeric state (fold worker thread only).

Float arrays go through a streaming accumulator from fedzero.aggregation;
other arrays (integer counters such as BatchNorm's ``num_batches_tracked``)
are averaged in float64 and rounded back, since they are typically tiny.

Weights are normalised in float64 before they touch a sum: each is scaled by
the power of two of the round's first weight (exact, so a legit round's result
is bit for bit the same), which keeps huge (1e308) and subnormal weights and
their sum finite. A weight that cannot be brought into range is rejected, and
a round whose aggregate is nevertheless not finite fails with a clear error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import structlog

from fedzero.aggregation import weighted_metrics_mean
from fedzero.aggregation.kernels import (
    INPUT_DTYPES,
    Accumulator,
    KrumAccumulator,
    MedianAccumulator,
    TrimmedMeanAccumulator,
    UpdateRejected,
    WeightedMeanAccumulator,
    all_finite,
    prepare_kernels,
)
from fedzero.aggregation.kernels import warmup as _warmup_kernels
from fedzero.core import ArrayRecord, RecordDict
from fedzero.core.wire import encode_content

from ._checkpoints import prune_checkpoints, save_checkpoint
from ._spec import AggregateSpec

log = structlog.get_logger(__name__)

_CHUNK: Final = 1 << 20  # elements per chunk when measuring a delta's norm
_SMALL: Final = 1 << 16  # up to this many elements, NumPy checks finiteness (no parallel launch)
_NATIVE: Final = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

Arrays = Mapping[str, np.ndarray]


def warmup() -> None:
    """Compile every kernel before the first round needs it."""
    _warmup_kernels()


def _accumulator(spec: AggregateSpec, expected: int) -> Accumulator:
    common: dict[str, Any] = {
        "accumulator_dtype": spec.accumulator or None,
        # RoundState checks finiteness itself (_check_finite): a parallel kernel
        # launch per small array cost most of a 1k-param round's fold time.
        "reject_non_finite": False,
    }
    if spec.method == "fedavg":
        return WeightedMeanAccumulator(**common)
    if spec.method == "trimmed_mean":
        return TrimmedMeanAccumulator(spec.beta, max(1, expected), **common)
    if spec.method == "median":
        return MedianAccumulator(copy=False, **common)
    keep = 0 if spec.method == "krum" else spec.num_selected
    return KrumAccumulator(spec.num_malicious, keep, copy=False, **common)


def _placeholder(array: np.ndarray) -> np.ndarray:
    """A zero-strided array with ``array``'s shape and dtype, holding one element."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, array.dtype), array.shape, (0,) * array.ndim)


def _delta_norm(update: Arrays, reference: Arrays) -> float:
    total = 0.0
    for name, ref in reference.items():
        x, g = update[name].reshape(-1), ref.reshape(-1)
        for start in range(0, x.size, _CHUNK):
            d = x[start : start + _CHUNK].astype(np.float64) - g[start : start + _CHUNK]
            total += float(np.dot(d, d))
    return float(np.sqrt(total))


def _check_finite(pairs: list[tuple[Arrays, float]], reference: Arrays) -> None:
    """Reject an update holding NaN or +-inf (arrays the accumulator will take).

    Arrays that do not match their reference (dtype, shape, layout) are left to
    the accumulator, which rejects them with its own reason.

    Raises:
        UpdateRejected: naming the first non-finite array.
    """
    for j, (arrays, _) in enumerate(pairs):
        for name, ref in reference.items():
            x = arrays.get(name)
            if not (
                isinstance(x, np.ndarray)
                and x.dtype == ref.dtype
                and x.shape == ref.shape
                and x.flags.c_contiguous
            ):
                continue
            small = x.size <= _SMALL and x.dtype in _NATIVE
            if not (bool(np.isfinite(x).all()) if small else all_finite(x)):
                raise UpdateRejected(f"update {j}: array {name!r} contains NaN or infinity")


def _checkpoint(arrays: Arrays, directory: Path, run_id: int, server_round: int, keep: int) -> None:
    """Save the round's global model as ``.safetensors`` (off the IO thread), then prune."""
    try:
        _, frames = encode_content(RecordDict({"arrays": ArrayRecord(dict(arrays), copy=False)}))
        save_checkpoint(directory, run_id, server_round, frames)
        prune_checkpoints(directory, run_id, keep)
    except (OSError, ValueError) as exc:  # a full disk must not stop training
        log.error("checkpoint_failed", run_id=run_id, round=server_round, error=str(exc))


class RoundState:
    """Accumulator, side sums and metrics of one round."""

    def __init__(self, spec: AggregateSpec, reference: Arrays, expected: int) -> None:
        self.spec = spec
        if spec.clip_norm <= 0:
            # Only names, shapes and dtypes are needed: do not keep the pushed model
            # (and so its received frames) alive for the whole round.
            reference = {k: _placeholder(v) for k, v in reference.items()}
        self.floats = {k: v for k, v in reference.items() if v.dtype in INPUT_DTYPES}
        self.others = {k: v for k, v in reference.items() if k not in self.floats}
        self.acc = _accumulator(spec, expected)
        self.acc.begin(self.floats)
        # The kernels this round runs compile in the background from now, while
        # its replies are on their way (FedAvg folds in NumPy until they are ready).
        acc_dtypes = {self.acc.acc_dtype(name) for name in self.floats}
        prepare_kernels(spec.method, {v.dtype for v in self.floats.values()}, acc_dtypes)
        self.other_sums = {k: np.zeros(v.shape, np.float64) for k, v in self.others.items()}
        self.weight = 0.0
        self.metrics: list[tuple[dict[str, Any], float]] = []
        self.exponent: int | None = None
        """The binary exponent of the round's first weight: every weight is scaled by it."""

    def _normalised(self, weight: float) -> float:
        """``weight`` scaled by the round's power of two, checked in float64.

        Raises:
            UpdateRejected: the weight is not finite and > 0, or out of range
                relative to this round's weights (its scaled value or the sum
                would not be a finite positive float64).
        """
        w = float(weight)
        if not math.isfinite(w) or w <= 0:
            raise UpdateRejected(f"weight must be finite and > 0, got {weight!r}")
        if self.exponent is None:
            self.exponent = math.frexp(w)[1]
        try:
            scaled = math.ldexp(w, -self.exponent)
        except OverflowError:
            scaled = math.inf
        if not (math.isfinite(scaled) and scaled > 0 and math.isfinite(self.weight + scaled)):
            raise UpdateRejected(
                f"weight {w!r} is out of range next to this round's weights (float64 overflow "
                "or underflow)"
            )
        return scaled

    def _check_others(self, update: Arrays) -> None:
        names = set(update)
        expected = set(self.floats) | set(self.others)
        if names != expected:
            missing, extra = sorted(expected - names)[:3], sorted(names - expected)[:3]
            raise UpdateRejected(f"array names differ: missing {missing}, unexpected {extra}")
        for name, ref in self.others.items():
            got = update[name]
            if got.dtype != ref.dtype or got.shape != ref.shape:
                have, want = f"{got.dtype}{list(got.shape)}", f"{ref.dtype}{list(ref.shape)}"
                raise UpdateRejected(f"array {name!r} is {have}, expected {want}")

    def _pairs(self, update: Arrays, weight: float) -> list[tuple[Arrays, float]]:
        floats = {k: update[k] for k in self.floats}
        if self.spec.clip_norm <= 0:
            return [(floats, weight)]
        # g + f (x - g) = f x + (1 - f) g: clip the delta by folding two weighted terms.
        factor = min(1.0, self.spec.clip_norm / max(_delta_norm(floats, self.floats), 1e-300))
        pairs: list[tuple[Arrays, float]] = [(floats, weight * factor)]
        if factor < 1.0:
            pairs.append((self.floats, weight * (1.0 - factor)))
        return pairs

    def fold(self, jobs: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Fold ``("fold", round_id, reply_to, node_id, arrays, weight, metrics)`` jobs."""
        outcomes: list[tuple[Any, ...]] = []
        good: list[tuple[tuple[Any, ...], list[tuple[Arrays, float]]]] = []
        for raw in jobs:
            _, round_id, reply_to, node_id, arrays, weight, _metrics = raw
            try:
                self._check_others(arrays)
                job = (*raw[:5], self._normalised(weight), raw[6])
                pairs = self._pairs(arrays, job[5])
                if self.spec.reject_non_finite:
                    _check_finite(pairs, self.floats)
                good.append((job, pairs))
            except UpdateRejected as exc:
                outcomes.append(("folded", round_id, reply_to, node_id, exc.reason))
        try:  # node ids as keys: Krum breaks equal scores by node id, not arrival order
            keys = [job[3] for job, pairs in good for _ in pairs]
            self.acc.fold_many([p for _, pairs in good for p in pairs], keys=keys)
            accepted = good
        except UpdateRejected:  # rare: find the bad ones, fold the rest one by one
            accepted = []
            for job, pairs in good:
                try:
                    self.acc.fold_many(pairs, keys=[job[3]] * len(pairs))
                    accepted.append((job, pairs))
                except UpdateRejected as exc:
                    outcomes.append(("folded", job[1], job[2], job[3], exc.reason))
        for job, _ in accepted:
            _, round_id, reply_to, node_id, arrays, weight, metrics = job
            for name, total in self.other_sums.items():
                total += weight * arrays[name]
            self.weight += weight
            self.metrics.append((metrics, weight))
            outcomes.append(("folded", round_id, reply_to, node_id, None))
        return outcomes

    def finish(self) -> tuple[dict[str, np.ndarray] | None, dict[str, Any]]:
        """Return the aggregated arrays (None if nothing was folded) and metrics.

        Raises:
            ValueError: the aggregate is not finite although the round rejects
                non-finite values (weights or values too large for the sums).
        """
        if self.acc.count == 0:
            return None, {}
        out = dict(self.acc.finish())
        if self.spec.reject_non_finite:
            bad = [name for name, arr in out.items() if not all_finite(arr)]
            if bad:
                raise ValueError(
                    f"the aggregate of {bad[:3]} is not finite (updates or weights too large "
                    f"for the {self.acc.acc_dtype(bad[0])} sums); the round has no result"
                )
        for name, total in self.other_sums.items():
            ref = self.others[name]
            mean = total / self.weight
            out[name] = (mean >= 0.5 if ref.dtype == np.bool_ else np.rint(mean)).astype(ref.dtype)
        ordered = {name: out[name] for name in (*self.floats, *self.others)}
        try:
            metrics = weighted_metrics_mean(self.metrics) if self.metrics else {}
        except (TypeError, ValueError) as exc:  # e.g. lists of different lengths
            log.warning("metrics_not_averaged", reason=str(exc))
            metrics = {}
        return ordered, metrics

    @staticmethod
    def process(
        states: dict[str, RoundState], batch: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """Run a batch of jobs; return their outcomes for the IO thread."""
        outcomes: list[tuple[Any, ...]] = []
        folds: dict[str, list[tuple[Any, ...]]] = {}
        for job in batch:
            kind, round_id = job[0], job[1]
            if kind == "fold":
                folds.setdefault(round_id, []).append(job)
            elif kind == "begin":
                try:
                    states[round_id] = RoundState(job[2], job[3], job[4])
                except (TypeError, ValueError) as exc:
                    outcomes.append(("finished", round_id, None, {}, f"cannot aggregate: {exc}"))
            elif kind == "finish":
                state = states.pop(round_id, None)
                try:
                    arrays, metrics = state.finish() if state else (None, {})
                except ValueError as exc:
                    log.error("round_not_finite", round_id=round_id, error=str(exc))
                    outcomes.append(("finished", round_id, None, {}, f"cannot aggregate: {exc}"))
                    continue
                if arrays is not None and job[2] is not None:
                    _checkpoint(arrays, *job[2])
                outcomes.append(("finished", round_id, arrays, metrics, None))
            elif kind == "drop":
                states.pop(round_id, None)
        for round_id, jobs in folds.items():
            state = states.get(round_id)
            if state is None:
                outcomes += [
                    ("folded", round_id, j[2], j[3], "the round cannot aggregate") for j in jobs
                ]
            else:
                outcomes += state.fold(jobs)
        return outcomes
