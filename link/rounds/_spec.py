"""How the link aggregates a round: the ``aggregate`` field of a push, validated.

Shared by the IO thread (which validates it when a push arrives) and the fold
worker (which builds the round's accumulator from it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Final

from fedzero.core import DeserializationError

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
        clip_norm: clip each update's delta to this L2 norm (fedavg only; 0: off).
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
        if self.clip_norm > 0 and self.method != "fedavg":
            # Clipping folds the sent model in as a weighted term: exact for a weighted
            # mean, wrong for weight-blind methods (it would count as an extra client).
            raise DeserializationError(
                f"push.aggregate: clip_norm works with method fedavg only, not {self.method}"
                " (clip each update before a robust method on the ServerApp)"
            )
