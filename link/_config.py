"""LinkConfig: every setting of the link daemon, with defaults for one machine.

Field names are the configuration keys: ``heartbeat_timeout`` is
``heartbeat-timeout`` in ``[link]`` of a TOML file (``--config``), the
environment variable ``FEDZERO_LINK_HEARTBEAT_TIMEOUT``, and the flag
``--heartbeat-timeout``; flags win over the environment, which wins over the file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from fedzero.core import ConfigurationError
from fedzero.core.runtime import (
    DEFAULT_APP_ADDRESS,
    DEFAULT_CONTROL_ADDRESS,
    DEFAULT_FLEET_ADDRESS,
    DEFAULT_HTTP_ADDRESS,
)

_MB = 2**20
_POSITIVE = (
    "heartbeat_interval",
    "heartbeat_timeout",
    "max_message_mb",
    "max_concurrent_uploads",
    "max_upload_mb",
)


@dataclasses.dataclass(slots=True)
class LinkConfig:
    """Settings of a link.

    Attributes:
        fleet_address: where nodes connect (ROUTER bind address).
        app_address: where ServerApps connect.
        control_address: where the ``fedzero`` CLI connects.
        http_address: ``host:port`` of the statistics web server ("" disables it).
        state_dir: where runs, rounds, nodes, events (SQLite) and checkpoints live
            (None: keep state in memory only).
        heartbeat_interval: seconds between a node's pings (told to nodes). Any
            message from a node counts as a heartbeat. The default, 10 s, suits
            a WAN fleet (Flower's are tens of seconds): 10,000 nodes are 1,000
            pings a second; a LAN or a test may use less.
        heartbeat_timeout: a node silent this long (as far as the link has read
            its socket: a link that is behind blames no node) is offline and
            its work fails at once. Default 30 s: three missed pings.
        max_message_mb: largest frame accepted (ZMQ_MAXMSGSIZE); bigger ones
            disconnect the sender.
        credit_threshold: replies larger than this many bytes wait for upload credit.
        max_concurrent_uploads: large uploads admitted at once.
        max_upload_mb: MB of large uploads admitted at once (one upload larger
            than this is admitted alone).
        curve_secret_key: the link's ``.key_secret`` file; enables CURVE on the
            fleet endpoint.
        allowed_keys_dir: directory of node public keys (``*.key``) allowed to
            connect; re-read on SIGHUP.
        control_allowed_keys_dir: directory of user public keys allowed on the
            control endpoint (``fedzero run/ls/...``); enables CURVE there (needs
            ``curve_secret_key``). Without it the control endpoint must stay on
            loopback: whoever reaches it can run code on this machine.
        checkpoint_retention: global-model checkpoints kept per run: the newest
            ones, so the final model is always among them (0: all). The default, 3,
            bounds the disk a long run takes (300 rounds of a 100 MB model).
        drain_grace: on SIGTERM, seconds in-flight rounds may take to finish.
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        warmup: compile every aggregation kernel for every dtype at start-up (in
            the fold worker, so the link serves at once; minutes on a cold cache).
            Off by default: each round compiles only the kernels it needs, in the
            background from the moment it opens (FedAvg folds in NumPy meanwhile).
        cache_dir: where compiled kernels are cached (Numba's cache goes in its
            ``numba`` subdirectory; sets ``FEDZERO_CACHE_DIR``). None: Numba's
            default, next to the installed sources if writable, else the user's
            cache directory. systemd units point it at ``CacheDirectory=``.
    """

    fleet_address: str = DEFAULT_FLEET_ADDRESS
    app_address: str = DEFAULT_APP_ADDRESS
    control_address: str = DEFAULT_CONTROL_ADDRESS
    http_address: str = DEFAULT_HTTP_ADDRESS
    state_dir: Path | None = None
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 30.0
    max_message_mb: int = 4096
    credit_threshold: int = _MB
    max_concurrent_uploads: int = 4
    max_upload_mb: int = 256
    curve_secret_key: Path | None = None
    allowed_keys_dir: Path | None = None
    control_allowed_keys_dir: Path | None = None
    checkpoint_retention: int = 3
    drain_grace: float = 30.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    warmup: bool = False
    cache_dir: Path | None = None

    @property
    def max_message_bytes(self) -> int:
        """``max_message_mb`` in bytes."""
        return self.max_message_mb * _MB

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return self.max_upload_mb * _MB

    @property
    def curve_enabled(self) -> bool:
        """Whether the fleet endpoint requires CURVE."""
        return self.curve_secret_key is not None and self.allowed_keys_dir is not None

    @property
    def control_curve_enabled(self) -> bool:
        """Whether the control endpoint requires CURVE (allow-listed user keys)."""
        return self.curve_secret_key is not None and self.control_allowed_keys_dir is not None

    def validate(self) -> None:
        """Check every value.

        Raises:
            ConfigurationError: naming the key and the problem.
        """
        for name in _POSITIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"{name}: must be a positive number, got {value!r}")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ConfigurationError(
                f"heartbeat_timeout: must exceed heartbeat_interval ({self.heartbeat_interval}), "
                f"got {self.heartbeat_timeout}"
            )
        for name in ("credit_threshold", "checkpoint_retention", "drain_grace"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name}: must be >= 0, got {getattr(self, name)}")
        dirs = (self.allowed_keys_dir, self.control_allowed_keys_dir)
        if (self.curve_secret_key is None) != all(d is None for d in dirs):
            raise ConfigurationError(
                "curve_secret_key, allowed_keys_dir, control_allowed_keys_dir: the link's key "
                "goes with at least one allow-list directory (fleet and/or control), or neither"
            )
        for name in ("fleet_address", "app_address", "control_address"):
            value = getattr(self, name)
            if not isinstance(value, str) or "://" not in value:
                raise ConfigurationError(f"{name}: expected an address like tcp://127.0.0.1:9092")
        if self.http_address and ":" not in self.http_address:
            raise ConfigurationError("http_address: expected host:port, e.g. 127.0.0.1:9095")
