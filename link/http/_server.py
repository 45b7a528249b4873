"""The link's statistics web server: a JSON API, Prometheus ``/metrics`` and a dashboard.

The server never reaches into the link: it reads a :class:`StatsSource`, a small
Protocol of JSON-ready snapshots that is safe to call from the server's threads.
:class:`LinkStatsSource` implements it on a running :class:`~fedzero.link.Link`.

Routes (GET and HEAD only):

- ``/`` the dashboard (one self-contained page: no external assets);
- ``/api/runs``, ``/api/runs/<id>``, ``/api/runs/<id>/rounds``, ``/api/nodes``,
  ``/api/stats``: JSON, ``Cache-Control: no-store``; unknown paths and ids are a
  404, a malformed id a 400, and every error body is JSON without a traceback;
- ``/api/health``: 200 ``{"status": "ok", ...}`` while the link is whole, 503 with
  the reasons while it is unhealthy (a thread died) or degraded (its store cannot
  write): what a load balancer or an uptime check polls;
- ``/metrics``: the Prometheus text format, read from the source at scrape time.
"""

from __future__ import annotations

import functools
import http
import json
import math
import re
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Final

import structlog

from fedzero.core import ConfigurationError
from fedzero.core.runtime import is_loopback_host
from fedzero.core.wire import MAX_ID

from ._metrics import CONTENT_TYPE, exposition, metrics_registry
from ._source import StatsSource

log = structlog.get_logger(__name__)

DEFAULT_PORT: Final = 9095
_RUN_PATH: Final = re.compile(r"/api/runs/([^/]+)(/rounds)?")
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
}


# --------------------------------------------------------------------- server


class StatsServer:
    """Serves a :class:`StatsSource` over HTTP from a daemon thread.

    Binds loopback by default; binding anything else logs a warning, as the
    statistics are neither authenticated nor encrypted.

    Args:
        source: where the statistics come from.
        address: host or IP to bind (IPv6 without brackets).
        port: TCP port; 0 picks a free one (see :attr:`url`).

    Example:
        >>> server = StatsServer(LinkStatsSource(link), port=0).start()
        >>> server.url
        'http://127.0.0.1:41517/'
        >>> server.stop()
    """

    def __init__(self, source: StatsSource, address: str = "127.0.0.1", port: int = DEFAULT_PORT):
        if not 0 <= port <= 65535:
            raise ValueError(f"http port must be in 0..65535, got {port}")
        self.source = source
        self.address = address
        self.port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:9095/`` (with the real port once started)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/"

    def start(self) -> StatsServer:
        """Bind and serve in a daemon thread; return self (at once if it already serves).

        Raises:
            ConfigurationError: the address cannot be bound (in use, not local,
                not resolvable); the message names it.
        """
        if self._httpd is not None:
            return self
        if not is_loopback_host(self.address):
            hint = (
                "the stats server has no authentication; bind 127.0.0.1 "
                "and put a reverse proxy in front to expose it"
            )
            log.warning("http_public_bind", address=self.address, port=self.port, hint=hint)
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        try:
            self._httpd = _Server((self.address, self.port), self.source, family)
        except OSError as exc:
            reason = f"cannot bind the stats server to {self.url}: {exc.strerror or exc}"
            raise ConfigurationError(reason) from exc
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="fedzero-http",
            daemon=True,
        )
        self._thread.start()
        log.info("http_started", url=self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        log.info("http_stopped", url=self.url)

    def __enter__(self) -> StatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_http_address(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:9095`` for IPv6) into host and port.

    Raises:
        ValueError: no port, or a port that is not 0..65535.
    """
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"http address: expected host:port, e.g. 127.0.0.1:9095, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], source: StatsSource, family: socket.AddressFamily
    ) -> None:
        self.address_family = family
        self.source = source
        self.registry = metrics_registry(source)
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request broke the handler itself (the client went away, ...): log, not stderr."""
        log.debug("http_connection_error", client=client_address[0], exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "fedzero-link"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"  # answer garbage with a status line, not bare JSON
    timeout = 10  # a client that stalls mid-request loses its thread after this

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        try:
            status, ctype, body, extra = self._route(path.rstrip("/") or "/")
        except Exception:  # the source failed: log it here, tell the client nothing more
            log.exception("http_handler_failed", path=path)
            status, ctype, body, extra = _json(500, {"error": "internal error"})
        self._respond(status, ctype, b"" if head else body, len(body), extra)

    def _route(self, path: str) -> tuple[int, str, bytes, dict[str, str]]:
        source = self.server.source
        if path in ("/", "/index.html"):
            return 200, "text/html; charset=utf-8", dashboard_html(), _PAGE_HEADERS
        if path == "/api/health":
            health = health_of(source.stats())
            return _json(200 if health["status"] == "ok" else 503, health)
        if path == "/metrics":
            return 200, CONTENT_TYPE, exposition(self.server.registry), {}
        simple = {"/api/runs": source.runs, "/api/nodes": source.nodes, "/api/stats": source.stats}
        if path in simple:
            return _json(200, simple[path]())
        match = _RUN_PATH.fullmatch(path)
        if match is None:
            return _json(404, {"error": f"no such path: {path[:200]}"})
        raw = match.group(1)
        if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_ID:
            return _json(400, {"error": f"run id must be a positive integer, got {raw[:40]!r}"})
        run_id = int(raw)
        run = source.run(run_id)
        if run is None:
            return _json(404, {"error": f"no run {run_id}"})
        return _json(200, source.rounds(run_id) if match.group(2) else run)

    def _respond(
        self, status: int, ctype: str, body: bytes, length: int, extra: Mapping[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer errors raised by http.server itself (bad request line, method, ...) in JSON."""
        self.close_connection = True
        _, ctype, body, _ = _json(code, {"error": message or http.HTTPStatus(code).phrase})
        if code == 501:  # an unsupported method: say which ones are
            self.send_response(405)
            self.send_header("Allow", "GET, HEAD")
        else:
            self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access log at debug level, through structlog (never stderr)."""
        status = code.value if isinstance(code, http.HTTPStatus) else code
        method, path = getattr(self, "command", None), getattr(self, "path", "")[:200]
        client = self.client_address[0]
        log.debug("http_request", client=client, method=method, path=path, status=status)

    def log_message(self, format: str, *args: Any) -> None:
        """Other http.server messages (timeouts, bad requests), at debug level."""
        log.debug("http_message", client=self.client_address[0], message=format % args)


def health_of(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The ``health`` of a source's stats (a source that reports none is ok)."""
    health = stats.get("health")
    if not isinstance(health, Mapping):
        return {"status": "ok", "healthy": True, "degraded": False, "reasons": []}
    return dict(health)


def _json(status: int, value: Any) -> tuple[int, str, bytes, dict[str, str]]:
    body = json.dumps(_jsonable(value), separators=(",", ":"), allow_nan=False).encode()
    return status, "application/json", body, {}


def _jsonable(value: Any) -> Any:
    """Non-finite floats become null (JSON has no NaN); sets and tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [_jsonable(v) for v in items]
    if isinstance(value, bytes):
        return value.hex()
    return value


@functools.cache
def dashboard_html() -> bytes:
    """Return the dashboard page (the package's ``_dashboard.html``, read once)."""
    return resources.files("fedzero.link.http").joinpath("_dashboard.html").read_bytes()
