"""Differential-privacy wrappers around any strategy (Flower's, Andrew et al. 2021).

Server-side clipping clips each update relative to the model that was sent.
Under a weighted mean (FedAvg and the server optimizers on top of it) the link
does it while folding (``clip_norm``: ``f x + (1 - f) g`` is the clipped update
``g + f (x - g)`` in two weighted terms, exact for a weighted mean). Every other
aggregation (median, trimmed mean, Krum, Bulyan, a subclass's own
``aggregate_train``) gets the replies, clipped here first, so it sees exactly
the clipped updates and never the sent model as an extra client.

Gaussian noise (``noise_multiplier * clipping_norm / num_sampled_clients``) is
added to the wrapped strategy's result, as Flower does. A privacy accountant
(the ``dp-accounting`` library, RDP) reports the epsilon spent so far in each
round's report (``dp-epsilon`` at ``dp-delta``), so ``fedzero log``, the stats
API and the dashboard show it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
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
)
from fedzero.core.wire import is_float_dtype

from ._loop import EvaluateFn, Hooks, run_strategy
from ._result import Result

log = structlog.get_logger(__name__)

KEY_CLIPPING_NORM = "clipping_norm"
"""Train-config key of the clipping bound (Flower's; fedzero also sends ``clipping-norm``)."""
KEY_NORM_BIT = "norm_bit"
"""Reply-metric key: True when the node clipped its update (adaptive clipping)."""


def update_norm(new: ArrayRecord, reference: ArrayRecord) -> float:
    """L2 norm of ``new - reference`` over the float arrays."""
    total = 0.0
    for name, ref in reference.items():
        if is_float_dtype(ref.dtype):
            d = np.asarray(new[name], np.float64) - np.asarray(ref, np.float64)
            total += float(np.dot(d.ravel(), d.ravel()))
    return math.sqrt(total)


def clip_arrays(new: ArrayRecord, reference: ArrayRecord, norm: float) -> tuple[ArrayRecord, bool]:
    """``reference + (new - reference) * min(1, norm / ||new - reference||)``; clipped?"""
    size = update_norm(new, reference)
    factor = min(1.0, norm / size) if size > 0 else 1.0
    out = {}
    for name, value in new.items():
        ref = reference.get(name)
        if ref is None or not is_float_dtype(value.dtype) or factor == 1.0:
            out[name] = np.asarray(value)
            continue
        delta = np.asarray(value, np.float64) - np.asarray(ref, np.float64)
        out[name] = (np.asarray(ref, np.float64) + delta * factor).astype(value.dtype)
    return ArrayRecord(out, copy=False), factor < 1.0


def _with_arrays(msg: Message, key: str, arrays: ArrayRecord) -> Message:
    """A reply like ``msg`` with its ArrayRecord ``key`` replaced (``msg`` untouched)."""
    content = RecordDict({k: (arrays if k == key else v) for k, v in msg.content.items()})
    return Message.from_parts(msg.metadata, content, None)


class PrivacyAccountant:
    """Epsilon spent by a run's noisy releases (RDP, ``dp-accounting``).

    Each round that releases a noisy aggregate composes one Gaussian mechanism
    of the run's noise multiplier (no sampling amplification, as Flower's
    fixed-clipping accounting).

    Args:
        delta: the delta the epsilon is reported at.
    """

    def __init__(self, delta: float = 1e-5) -> None:
        if not 0.0 < delta < 1.0:
            raise ConfigurationError(f"delta must be in (0, 1), got {delta}")
        self.delta = delta
        self.releases = 0
        self._accountant: Any = None

    def compose(self, noise_multiplier: float) -> None:
        """Record one release with noise ``noise_multiplier`` (0: epsilon becomes infinite)."""
        import dp_accounting  # type: ignore[import-untyped]
        from dp_accounting.rdp import RdpAccountant  # type: ignore[import-untyped]

        if self._accountant is None:
            self._accountant = RdpAccountant()
        self.releases += 1
        if noise_multiplier > 0:
            self._accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier))
        else:
            self._accountant = _Unbounded()

    def epsilon(self) -> float:
        """Epsilon spent so far at :attr:`delta` (0 before any release)."""
        if self._accountant is None:
            return 0.0
        return float(self._accountant.get_epsilon(self.delta))


class _Unbounded:
    def get_epsilon(self, delta: float) -> float:
        return math.inf


class _Wrapper:
    """What every DP wrapper shares: delegation, noise, accounting, the loop."""

    def __init__(
        self, strategy: Hooks, noise_multiplier: float, num_sampled_clients: int, delta: float
    ) -> None:
        if noise_multiplier < 0:
            raise ConfigurationError("the noise multiplier must be >= 0")
        if num_sampled_clients <= 0:
            raise ConfigurationError("the number of sampled clients must be positive")
        self.strategy = strategy
        self.noise_multiplier = noise_multiplier
        self.num_sampled_clients = num_sampled_clients
        self.clipping_norm = 0.0
        self.current_arrays = ArrayRecord()
        self.accounted_noise = noise_multiplier
        self.accountant = PrivacyAccountant(delta)
        self._rng = np.random.default_rng()

    @property
    def _arrays_key(self) -> str:
        return str(getattr(self.strategy, "arrayrecord_key", "arrays"))

    def summary(self) -> None:
        """Log the wrapper's and the wrapped strategy's configuration."""
        log.info(
            "strategy_dp",
            name=type(self).__name__,
            noise_multiplier=self.noise_multiplier,
            clipping_norm=self.clipping_norm,
            num_sampled_clients=self.num_sampled_clients,
        )
        self.strategy.summary()

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's."""
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """The wrapped strategy's."""
        return self.strategy.aggregate_evaluate(server_round, replies)

    def report_metrics(self, server_round: int) -> dict[str, float]:
        """The wrapped strategy's figures plus the epsilon spent so far."""
        out = dict(self.strategy.report_metrics(server_round))
        epsilon = self.accountant.epsilon()
        if math.isfinite(epsilon):
            out["dp-epsilon"] = epsilon
            out["dp-delta"] = self.accountant.delta
        out["dp-clipping-norm"] = float(self.clipping_norm)
        return out

    def privacy_spent(self) -> tuple[float, float]:
        """``(epsilon, delta)`` spent so far."""
        return self.accountant.epsilon(), self.accountant.delta

    def _release(self, arrays: ArrayRecord | None) -> ArrayRecord | None:
        """Add the Gaussian noise to ``arrays`` and account for the release."""
        if arrays is None:
            return None
        std = self.noise_multiplier * self.clipping_norm / self.num_sampled_clients
        noisy = {}
        for name, value in arrays.items():
            if is_float_dtype(value.dtype):
                noise = self._rng.normal(0.0, std, value.shape)
                noisy[name] = (np.asarray(value, np.float64) + noise).astype(value.dtype)
            else:
                noisy[name] = np.asarray(value)
        self.accountant.compose(self.accounted_noise)
        return ArrayRecord(noisy, copy=False)

    def _clip_replies(self, replies: list[Message]) -> tuple[list[Message], int]:
        """Each reply clipped relative to the sent model; how many were clipped."""
        key, count, clipped = self._arrays_key, 0, []
        for msg in replies:
            arrays = msg.content.array_records.get(key)
            if arrays is None:
                clipped.append(msg)
                continue
            bounded, was_clipped = clip_arrays(arrays, self.current_arrays, self.clipping_norm)
            count += int(was_clipped)
            clipped.append(_with_arrays(msg, key, bounded))
        return clipped, count

    def _refuse_errors(self, server_round: int, failures: int) -> bool:
        """Flower: a round with failed replies releases nothing."""
        if failures:
            log.warning("dp_round_not_released", round=server_round, failures=failures)
        return failures > 0

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
        """Run the wrapped strategy privately (see :meth:`Strategy.start`)."""
        return run_strategy(
            self,  # type: ignore[arg-type]  # the subclasses add the train hooks
            grid,
            initial_arrays,
            num_rounds,
            timeout,
            train_config,
            evaluate_config,
            evaluate_fn,
        )
