"""Context: what a ServerApp or ClientApp knows about its run and node."""

from __future__ import annotations

import dataclasses
from typing import TypeAlias

from ._records import RecordDict

Scalar: TypeAlias = int | float | bool | str | bytes
"""One configuration or metric value (Flower's ``Scalar``)."""
UserConfigValue: TypeAlias = Scalar
"""One value of a :data:`UserConfig` (Flower's ``UserConfigValue``)."""
UserConfig: TypeAlias = dict[str, Scalar]
"""Run and node configuration: flat ``str -> scalar`` (keys like ``"num-rounds"``)."""


@dataclasses.dataclass(slots=True)
class Context:
    """Per run and node: its configuration and a state that persists across messages.

    Attributes:
        run_id: the run.
        node_id: the node (0 on the ServerApp side).
        node_config: the node's configuration, e.g. ``{"partition-id": 3}``.
        run_config: the run's configuration, e.g. ``{"num-rounds": 5}``.
        state: records the app keeps between messages of the same run.
    """

    run_id: int
    node_id: int
    node_config: UserConfig = dataclasses.field(default_factory=dict)
    run_config: UserConfig = dataclasses.field(default_factory=dict)
    state: RecordDict = dataclasses.field(default_factory=RecordDict)
