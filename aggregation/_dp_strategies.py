"""Flower's four DP wrappers: fixed and adaptive clipping, server- and client-side.

See ``_privacy.py`` for how clipping, noise and accounting work. Constructor
arguments and defaults are Flower 1.42's (plus ``delta`` for the accountant).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import structlog

from fedzero.core import (
    ArrayRecord,
    ConfigRecord,
    ConfigurationError,
    Grid,
    Message,
    MetricRecord,
    RoundResult,
)

from ._loop import Hooks
from ._privacy import KEY_CLIPPING_NORM, KEY_NORM_BIT, _Wrapper

log = structlog.get_logger(__name__)


def _own(obj: object, base: type, name: str) -> bool:
    """Whether ``obj``'s class still uses ``base``'s ``name`` (not a subclass's)."""
    return getattr(type(obj), name) is getattr(base, name)


class DifferentialPrivacyServerSideFixedClipping(_Wrapper):
    """Wrap a strategy: each update is clipped to ``clipping_norm``, noise added to the result.

    Args:
        strategy: the strategy to make private.
        noise_multiplier: noise standard deviation in units of the clipping norm.
        clipping_norm: L2 bound on each update's distance to the sent model.
        num_sampled_clients: nodes per round (scales the noise).
        delta: the delta the accountant reports epsilon at.

    Raises:
        ConfigurationError: a negative noise multiplier, a clipping norm <= 0, or
            a number of sampled clients <= 0.
    """

    def __init__(
        self,
        strategy: Hooks,
        noise_multiplier: float,
        clipping_norm: float,
        num_sampled_clients: int,
        *,
        delta: float = 1e-5,
    ) -> None:
        super().__init__(strategy, noise_multiplier, num_sampled_clients, delta)
        if not clipping_norm > 0:
            raise ConfigurationError("the clipping norm must be positive (clipping_norm > 0)")
        self.clipping_norm = float(clipping_norm)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the model sent; the wrapped strategy's messages."""
        self.current_arrays = arrays
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def link_spec(self) -> dict[str, Any] | None:
        """The link clips while folding a weighted mean; anything else gets the replies."""
        if not _own(self, DifferentialPrivacyServerSideFixedClipping, "aggregate_train"):
            return None
        spec = self.strategy.link_spec()
        if spec is None or spec.get("method") != "fedavg":
            return None
        return {**spec, "clip_norm": self.clipping_norm}

    def aggregate_link_round(
        self, server_round: int, outcome: RoundResult
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The wrapped strategy's result of the clipped round, plus noise."""
        if self._refuse_errors(server_round, len(outcome.failures)):
            return None, None
        arrays, metrics = self.strategy.aggregate_link_round(server_round, outcome)
        return self._release(arrays), metrics

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Clip every reply, let the wrapped strategy aggregate them, add noise."""
        replies = list(replies)
        if self._refuse_errors(server_round, sum(m.has_error() for m in replies)):
            return None, None
        clipped, _ = self._clip_replies(replies)
        arrays, metrics = self.strategy.aggregate_train(server_round, clipped)
        return self._release(arrays), metrics


class DifferentialPrivacyClientSideFixedClipping(DifferentialPrivacyServerSideFixedClipping):
    """Wrap a strategy: nodes clip their own update, noise is added to the result.

    The bound travels in the train config as ``"clipping_norm"`` (Flower's key;
    also as ``"clipping-norm"``); ``fixedclipping_mod`` or
    :func:`fedzero.core.clip_update` applies it on the node.
    """

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Add the clipping norm to the config; the wrapped strategy's messages."""
        config[KEY_CLIPPING_NORM] = self.clipping_norm
        config["clipping-norm"] = self.clipping_norm
        return super().configure_train(server_round, arrays, config, grid)

    def link_spec(self) -> dict[str, Any] | None:
        """The wrapped strategy's (the nodes clipped already)."""
        if not _own(self, DifferentialPrivacyClientSideFixedClipping, "aggregate_train"):
            return None
        return self.strategy.link_spec()

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The wrapped strategy's aggregate of the (node-clipped) replies, plus noise."""
        replies = list(replies)
        if self._refuse_errors(server_round, sum(m.has_error() for m in replies)):
            return None, None
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        return self._release(arrays), metrics


def adaptive_noise_params(
    noise_multiplier: float, num_sampled_clients: float, clipped_count_stddev: float | None
) -> tuple[float, float]:
    """``(clipped_count_stddev, model noise multiplier)`` (Andrew et al. 2021, Flower's)."""
    if noise_multiplier <= 0:
        return (clipped_count_stddev or 0.0), 0.0
    if clipped_count_stddev is None:
        clipped_count_stddev = num_sampled_clients / 20
    if noise_multiplier >= 2 * clipped_count_stddev:
        raise ConfigurationError(
            f"clipped_count_stddev ({clipped_count_stddev}) is too low for the noise "
            f"multiplier {noise_multiplier}; increase it or lower the noise multiplier"
        )
    return clipped_count_stddev, (noise_multiplier**-2 - (2 * clipped_count_stddev) ** -2) ** -0.5


class _Adaptive(_Wrapper):
    def __init__(
        self,
        strategy: Hooks,
        noise_multiplier: float,
        num_sampled_clients: int,
        initial_clipping_norm: float = 0.1,
        target_clipped_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
        *,
        delta: float = 1e-5,
    ) -> None:
        super().__init__(strategy, noise_multiplier, num_sampled_clients, delta)
        if not initial_clipping_norm > 0:
            raise ConfigurationError("initial_clipping_norm must be positive")
        if not 0 <= target_clipped_quantile <= 1:
            raise ConfigurationError("target_clipped_quantile must be in [0, 1]")
        if not clip_norm_lr > 0:
            raise ConfigurationError("clip_norm_lr must be positive")
        if clipped_count_stddev is not None and clipped_count_stddev < 0:
            raise ConfigurationError("clipped_count_stddev must be >= 0")
        self.clipping_norm = float(initial_clipping_norm)
        self.target_clipped_quantile = target_clipped_quantile
        self.clip_norm_lr = clip_norm_lr
        self.accounted_noise = noise_multiplier  # the whole mechanism's (model + count)
        self.clipped_count_stddev, self.noise_multiplier = adaptive_noise_params(
            noise_multiplier, num_sampled_clients, clipped_count_stddev
        )

    def _update_norm(self, clipped: int, total: int) -> None:
        """Geometric update of the clipping norm from the noisy clipped fraction."""
        if total <= 0:
            return
        fraction = float(self._rng.normal(clipped, self.clipped_count_stddev)) / total
        self.clipping_norm *= math.exp(
            -self.clip_norm_lr * (fraction - self.target_clipped_quantile)
        )


class DifferentialPrivacyServerSideAdaptiveClipping(_Adaptive):
    """Server-side adaptive clipping: the bound follows a quantile of update norms.

    Args: as Flower's (``strategy``, ``noise_multiplier``, ``num_sampled_clients``,
        ``initial_clipping_norm=0.1``, ``target_clipped_quantile=0.5``,
        ``clip_norm_lr=0.2``, ``clipped_count_stddev=None``), plus ``delta``.
    """

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the model sent; the wrapped strategy's messages."""
        self.current_arrays = arrays
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def link_spec(self) -> dict[str, Any] | None:
        """Always the replies: every update's norm is needed."""
        return None

    def aggregate_link_round(
        self, server_round: int, outcome: RoundResult
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Not used (``link_spec`` is None)."""
        raise NotImplementedError

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Clip with the current bound, update the bound, aggregate, add noise."""
        replies = list(replies)
        if self._refuse_errors(server_round, sum(m.has_error() for m in replies)):
            return None, None
        clipped, count = self._clip_replies(replies)
        self._update_norm(count, len(replies))
        arrays, metrics = self.strategy.aggregate_train(server_round, clipped)
        return self._release(arrays), metrics


class DifferentialPrivacyClientSideAdaptiveClipping(_Adaptive):
    """Client-side adaptive clipping: nodes clip and report ``norm_bit``.

    ``adaptiveclipping_mod`` on the nodes reads ``"clipping_norm"`` from the
    train config, clips, and adds ``norm_bit`` (clipped or not) to the reply's
    metrics. Arguments as :class:`DifferentialPrivacyServerSideAdaptiveClipping`.
    """

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Add the current clipping norm to the config."""
        config[KEY_CLIPPING_NORM] = self.clipping_norm
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def link_spec(self) -> dict[str, Any] | None:
        """The wrapped strategy's (norm bits come back as per-node metrics)."""
        if not _own(self, DifferentialPrivacyClientSideAdaptiveClipping, "aggregate_train"):
            return None
        return self.strategy.link_spec()

    def aggregate_link_round(
        self, server_round: int, outcome: RoundResult
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate, update the bound from the nodes' norm bits, add noise."""
        if self._refuse_errors(server_round, len(outcome.failures)):
            return None, None
        bits = [m.get(KEY_NORM_BIT) for m in outcome.node_metrics.values()]
        if any(b is None for b in bits):
            log.warning("dp_norm_bit_missing", round=server_round)
            return None, None
        arrays, metrics = self.strategy.aggregate_link_round(server_round, outcome)
        self._update_norm(sum(bool(b) for b in bits), len(bits))
        return self._release(arrays), metrics

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate, update the bound from the replies' norm bits, add noise."""
        replies = list(replies)
        if self._refuse_errors(server_round, sum(m.has_error() for m in replies)):
            return None, None
        bits = []
        for msg in replies:
            found = [
                r[KEY_NORM_BIT] for r in msg.content.metric_records.values() if KEY_NORM_BIT in r
            ]
            if not found:
                log.warning(
                    "dp_norm_bit_missing", round=server_round, node_id=msg.metadata.src_node_id
                )
                return None, None
            bits.append(bool(found[0]))
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        self._update_norm(sum(bits), len(bits))
        return self._release(arrays), metrics
