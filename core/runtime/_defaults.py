"""The default endpoints of a federation on one machine, shared by the daemons and the CLI."""

from __future__ import annotations

from typing import Final

DEFAULT_APP_ADDRESS: Final = "tcp://127.0.0.1:9091"
"""Where the link's app endpoint listens for ServerApps."""
DEFAULT_FLEET_ADDRESS: Final = "tcp://127.0.0.1:9092"
"""Where the link's fleet endpoint listens for nodes (a node's default ``--link``)."""
DEFAULT_CONTROL_ADDRESS: Final = "tcp://127.0.0.1:9093"
"""Where the link's control endpoint listens for the ``fedzero`` command."""
DEFAULT_HTTP_ADDRESS: Final = "127.0.0.1:9095"
"""Where the link's statistics web server listens."""
