"""LinkConfig: every setting of the link daemon, with defaults for one machine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fedzero.core import ConfigurationError

DEFAULT_APP_ADDRESS = "tcp://127.0.0.1:9091"
DEFAULT_FLEET_ADDRESS = "tcp://127.0.0.1:9092"


@dataclasses.dataclass(slots=True)
class LinkConfig:
    """Settings of a link.

    Attributes:
        fleet_address: where nodes connect (ROUTER bind address).
        app_address: where ServerApps connect.
        heartbeat_interval: seconds between a node's pings (told to nodes).
        heartbeat_timeout: a node silent this long is offline and its work fails.
        max_message_bytes: largest frame accepted (ZMQ_MAXMSGSIZE); bigger
            ones disconnect the sender.
        credit_threshold: replies larger than this wait for upload credit.
        max_concurrent_uploads: large uploads admitted at once.
        max_upload_bytes: bytes of large uploads admitted at once (one upload
            larger than this is admitted alone).
        curve_secret_key: the link's ``.key_secret`` file; enables CURVE on the
            fleet endpoint.
        allowed_keys_dir: directory of node public keys (``*.key``) allowed to
            connect; reloaded on :meth:`Link.reload_keys` (SIGHUP).
        warmup: compile every aggregation kernel at start-up (in the fold
            worker, so the link serves at once) rather than at the first round.
    """

    fleet_address: str = DEFAULT_FLEET_ADDRESS
    app_address: str = DEFAULT_APP_ADDRESS
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 3.0
    max_message_bytes: int = 4 * 2**30
    credit_threshold: int = 2**20
    max_concurrent_uploads: int = 4
    max_upload_bytes: int = 256 * 2**20
    curve_secret_key: Path | None = None
    allowed_keys_dir: Path | None = None
    warmup: bool = True

    def validate(self) -> None:
        """Check every value.

        Raises:
            ConfigurationError: naming the key and the problem.
        """
        positive = (
            "heartbeat_interval",
            "heartbeat_timeout",
            "max_message_bytes",
            "max_concurrent_uploads",
            "max_upload_bytes",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"{name}: must be a positive number, got {value!r}")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ConfigurationError(
                f"heartbeat_timeout: must exceed heartbeat_interval ({self.heartbeat_interval}), "
                f"got {self.heartbeat_timeout}"
            )
        if self.credit_threshold < 0:
            raise ConfigurationError(f"credit_threshold: must be >= 0, got {self.credit_threshold}")
        if (self.allowed_keys_dir is None) != (self.curve_secret_key is None):
            raise ConfigurationError(
                "curve_secret_key, allowed_keys_dir: set both to enable CURVE, or neither"
            )
        for name in ("fleet_address", "app_address"):
            value = getattr(self, name)
            if not isinstance(value, str) or "://" not in value:
                raise ConfigurationError(f"{name}: expected an address like tcp://127.0.0.1:9092")

    @property
    def curve_enabled(self) -> bool:
        """Whether the fleet endpoint requires CURVE."""
        return self.curve_secret_key is not None
