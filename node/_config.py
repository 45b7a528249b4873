"""NodeConfig: the settings of the node daemon (keys of ``[node]`` in a TOML file)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from fedzero.core import ConfigurationError
from fedzero.core.runtime import DEFAULT_FLEET_ADDRESS
from fedzero.core.wire import MAX_ID


@dataclasses.dataclass(slots=True)
class NodeConfig:
    """Settings of a node.

    Attributes:
        link: the link's fleet endpoint.
        app: an app project folder whose ClientApp serves every run; without
            one, each run's app comes from its bundle (fetched from the link).
        isolation: ``process`` (a worker process per run, the default) or
            ``thread`` (in the node's own process; needs ``app``).
        allowed_bundles: a file of bundle hashes (one per line) this node runs;
            unset: any bundle the link sends.
        node_id: a fixed node id (ignored when the link derives ids from CURVE keys).
        node_config: this node's configuration, e.g. ``{partition-id = 0}``.
        state_dir: where the node keeps its identity and caches (None: nothing kept).
        curve_secret_key: this node's CURVE ``.key_secret`` file.
        link_public_key: the link's CURVE public ``.key`` file.
        drain_grace: on SIGTERM, seconds running tasks may take to finish.
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
    """

    link: str = DEFAULT_FLEET_ADDRESS
    app: Path | None = None
    isolation: Literal["process", "thread"] = "process"
    allowed_bundles: Path | None = None
    node_id: int | None = None
    node_config: dict[str, str | int | float | bool] = dataclasses.field(default_factory=dict)
    state_dir: Path | None = None
    curve_secret_key: Path | None = None
    link_public_key: Path | None = None
    drain_grace: float = 30.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def validate(self) -> None:
        """Check every value.

        Raises:
            ConfigurationError: naming the key and the problem.
        """
        if "://" not in self.link:
            raise ConfigurationError("link: expected an address like tcp://127.0.0.1:9092")
        if self.app is None and self.isolation == "thread":
            raise ConfigurationError("isolation: 'thread' needs an app folder (app)")
        if (self.curve_secret_key is None) != (self.link_public_key is None):
            raise ConfigurationError("curve_secret_key, link_public_key: set both, or neither")
        if self.node_id is not None and not 0 < self.node_id <= MAX_ID:
            raise ConfigurationError(f"node_id: must be in [1, {MAX_ID}], got {self.node_id}")
        if self.drain_grace < 0:
            raise ConfigurationError(f"drain_grace: must be >= 0, got {self.drain_grace}")
