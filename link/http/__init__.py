"""The statistics web server: JSON API, Prometheus metrics, dashboard."""

from ._link_source import LinkStatsSource
from ._server import StatsServer, parse_http_address

__all__ = [
    "LinkStatsSource",
    "StatsServer",
    "parse_http_address",
]
