"""The statistics web server: JSON API, Prometheus metrics, dashboard."""

from ._link_source import LinkStatsSource, LinkView
from ._server import StatsServer, parse_http_address
from ._source import StatsSource

__all__ = [
    "LinkStatsSource",
    "LinkView",
    "StatsServer",
    "StatsSource",
    "parse_http_address",
]
