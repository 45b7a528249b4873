"""The stats web server over real sockets on 127.0.0.1: JSON API, /metrics, errors, logging."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from fedzero.core import ConfigurationError, Grid
from fedzero.link.http import LinkStatsSource, StatsServer, parse_http_address
from tests.apps.echo.echoapp import client as echo
from tests.helpers import federation, model, train_all

pytestmark = pytest.mark.timeout(30)

T0 = 1_700_000_000.0


class DictSource:
    """A real StatsSource backed by plain dicts that a test mutates (under a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.run_rows: dict[int, dict[str, Any]] = {}
        self.round_rows: dict[int, list[dict[str, Any]]] = {}
        self.node_rows: dict[int, dict[str, Any]] = {}
        self.counters: dict[str, Any] = {"uptime_secs": 12.5}
        self.broken = False

    def add_run(self, run_id: int, status: str = "running", **fields: Any) -> None:
        with self.lock:
            self.run_rows[run_id] = {
                "run_id": run_id,
                "status": status,
                "app": "tests.apps.echo",
                "started_at": T0,
                "ended_at": None if status == "running" else T0 + 30,
                "rounds_done": 0,
                "nodes": 2,
                "replies": 0,
                "failures": 0,
                "error": "",
                "bytes_in": 0,
                "bytes_out": 0,
                "run_config": {"num-rounds": 3, "lr": 0.1},
                **fields,
            }
            self.round_rows.setdefault(run_id, [])

    def add_round(self, run_id: int, metrics: dict[str, Any], round_secs: float = 1.5) -> int:
        with self.lock:
            rounds = self.round_rows[run_id]
            number = len(rounds) + 1
            rounds.append(
                {
                    "round": number,
                    "at": T0 + 2.0 * number,
                    "metrics": metrics,
                    "round_secs": round_secs,
                    "replies": 2,
                    "failures": 0,
                }
            )
            run = self.run_rows[run_id]
            run["rounds_done"] = number
            run["replies"] += 2
            return number

    def add_node(self, node_id: int, online: bool = True, **fields: Any) -> None:
        with self.lock:
            self.node_rows[node_id] = {
                "node_id": node_id,
                "online": online,
                "last_seen": time.time() - 1.0,
                "node_config": {"partition-id": len(self.node_rows)},
                "bytes_in": 2048,
                "bytes_out": 4096,
                "public_key": None,
                **fields,
            }

    def _check(self) -> None:
        if self.broken:
            raise RuntimeError("secret-internal-detail")

    def runs(self) -> list[dict[str, Any]]:
        self._check()
        with self.lock:
            rows = sorted(self.run_rows.values(), key=lambda r: -r["run_id"])
            return [{k: v for k, v in r.items() if k != "run_config"} for r in rows]

    def run(self, run_id: int) -> dict[str, Any] | None:
        self._check()
        with self.lock:
            row = self.run_rows.get(run_id)
            return None if row is None else dict(row)

    def rounds(self, run_id: int) -> list[dict[str, Any]]:
        self._check()
        with self.lock:
            return [dict(r) for r in self.round_rows.get(run_id, [])]

    def nodes(self) -> list[dict[str, Any]]:
        self._check()
        with self.lock:
            return [dict(self.node_rows[k]) for k in sorted(self.node_rows)]

    def stats(self) -> dict[str, Any]:
        self._check()
        with self.lock:
            copy: dict[str, Any] = json.loads(json.dumps(self.counters))  # deep, JSON-ready
            return copy


@contextlib.contextmanager
def serving(source: Any) -> Iterator[StatsServer]:
    server = StatsServer(source, port=0).start()
    try:
        yield server
    finally:
        server.stop()


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, method=method)  # noqa: S310 (http://127.0.0.1 only)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def get_json(url: str) -> Any:
    status, headers, body = get(url)
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    return json.loads(body)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds, with a deadline (each try is an HTTP round trip)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        pause.wait(0.02)


@pytest.fixture
def source() -> DictSource:
    src = DictSource()
    src.add_run(1, "finished", ended_at=T0 + 9)
    for loss in (0.9, 0.5, 0.25):
        src.add_round(1, {"loss": loss, "accuracy": 1 - loss})
    src.add_run(2)
    src.add_node(11)
    src.add_node(12, online=False)
    src.counters.update(
        {
            "messages": 40,
            "replies": 38,
            "failures": {"node_unavailable": 2},
            "replies_dropped": {"duplicate": 3, "unknown": 1},
            "malformed": {"fleet": 4, "app": 0},
            "bytes_in": 10_000,
            "bytes_out": 20_000,
            "aggregation_secs": 1.25,
            "credit_in_flight": 2,
            "runs_by_status": {"running": 1, "finished": 1},
        }
    )
    return src


# ----------------------------------------------------------------- JSON API


def test_json_api(source: DictSource) -> None:
    with serving(source) as server:
        status, headers, body = get(server.url + "api/runs")
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert headers["Cache-Control"] == "no-store"
        runs = json.loads(body)
        assert [r["run_id"] for r in runs] == [2, 1]
        assert (runs[1]["status"], runs[1]["rounds_done"]) == ("finished", 3)
        run = get_json(server.url + "api/runs/1")
        assert run["run_config"] == {"num-rounds": 3, "lr": 0.1}
        rounds = get_json(server.url + "api/runs/1/rounds")
        assert [r["metrics"]["loss"] for r in rounds] == [0.9, 0.5, 0.25]
        assert get_json(server.url + "api/runs/2/rounds") == []
        nodes = get_json(server.url + "api/nodes")
        assert [(n["node_id"], n["online"]) for n in nodes] == [(11, True), (12, False)]
        assert get_json(server.url + "api/stats")["replies_dropped"] == {
            "duplicate": 3,
            "unknown": 1,
        }
        assert get_json(server.url + "api/runs/")[0]["run_id"] == 2  # a trailing slash is fine
        assert get_json(server.url + "api/runs?limit=1")[0]["run_id"] == 2  # queries are ignored


def test_reads_the_source_at_every_request(source: DictSource) -> None:
    with serving(source) as server:
        assert len(get_json(server.url + "api/runs/2/rounds")) == 0
        source.add_round(2, {"loss": 1.0})
        assert len(get_json(server.url + "api/runs/2/rounds")) == 1


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("api/nope", 404),
        ("api", 404),
        ("favicon.ico", 404),
        ("api/runs/999", 404),
        ("api/runs/999/rounds", 404),
        ("api/runs/1/other", 404),
        ("api/runs/abc", 400),
        ("api/runs/-1", 400),
        ("api/runs/1.5", 400),
        ("api/runs/%31", 400),
        ("api/runs/99999999999999999999999", 400),
        ("api/runs/9223372036854775808/rounds", 400),
        ("api/runs/%D9%A3", 400),  # an Arabic-Indic digit is not a run id
    ],
)
def test_errors_are_json(source: DictSource, path: str, status: int) -> None:
    with serving(source) as server:
        code, headers, body = get(server.url + path)
    assert code == status
    assert headers["Content-Type"] == "application/json"
    assert set(json.loads(body)) == {"error"}


def test_source_failure_is_a_500_without_details(source: DictSource) -> None:
    source.broken = True
    with serving(source) as server, capture_logs() as logs:
        status, _, body = get(server.url + "api/runs")
        metrics_status, _, metrics_body = get(server.url + "metrics")
    assert status == 500
    assert json.loads(body) == {"error": "internal error"}
    assert metrics_status == 500
    for text in (body, metrics_body):
        assert b"secret-internal-detail" not in text
        assert b"Traceback" not in text
    failed = [e for e in logs if e["event"] == "http_handler_failed"]
    assert [e["path"] for e in failed] == ["/api/runs", "/metrics"]
    assert all(e["log_level"] == "error" for e in failed)


def test_non_finite_numbers_are_null(source: DictSource) -> None:
    source.add_round(2, {"loss": math.nan, "grad-norm": math.inf, "accuracy": 0.5})
    with serving(source) as server:
        _, _, body = get(server.url + "api/runs/2/rounds")
    assert json.loads(body)[0]["metrics"] == {"loss": None, "grad-norm": None, "accuracy": 0.5}


def test_head_and_unsupported_methods(source: DictSource) -> None:
    with serving(source) as server:
        status, headers, body = get(server.url + "api/runs", method="HEAD")
        assert (status, body) == (200, b"")
        assert int(headers["Content-Length"]) > 2
        status, headers, body = get(server.url + "api/runs", method="POST")
        assert status == 405
        assert headers["Allow"] == "GET, HEAD"
        assert "error" in json.loads(body)


def test_garbage_request_gets_a_json_400(source: DictSource) -> None:
    with serving(source) as server, socket.create_connection(("127.0.0.1", server.port), 10) as s:
        s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"Content-Type: application/json" in head
    assert "error" in json.loads(body)


# ------------------------------------------------------------------ /metrics


def scrape(server: StatsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, headers, body = get(server.url + "metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_prometheus_metrics(source: DictSource) -> None:
    source.add_round(2, {"loss": 1.0}, round_secs=2.75)
    with serving(source) as server:
        samples = scrape(server)
    assert samples[("fedzero_nodes_online", ())] == 1
    assert samples[("fedzero_nodes_known", ())] == 2
    assert samples[("fedzero_runs", (("status", "running"),))] == 1
    assert samples[("fedzero_runs", (("status", "failed"),))] == 0
    assert samples[("fedzero_credit_in_flight", ())] == 2
    assert samples[("fedzero_replies_total", ())] == 38
    assert samples[("fedzero_messages_sent_total", ())] == 40
    assert samples[("fedzero_received_bytes_total", ())] == 10_000
    assert samples[("fedzero_sent_bytes_total", ())] == 20_000
    assert samples[("fedzero_aggregation_seconds_total", ())] == 1.25
    assert samples[("fedzero_replies_dropped_total", (("reason", "duplicate"),))] == 3
    assert samples[("fedzero_failures_total", (("code", "node_unavailable"),))] == 2
    assert samples[("fedzero_malformed_messages_total", (("endpoint", "fleet"),))] == 4
    assert samples[("fedzero_run_last_round_seconds", (("run_id", "2"),))] == 2.75
    assert samples[("fedzero_run_rounds", (("run_id", "2"),))] == 1
    assert ("fedzero_run_rounds", (("run_id", "1"),)) not in samples  # finished: no series
    assert not [name for name, _ in samples if not name.startswith("fedzero_")]  # private registry


def test_metrics_are_read_at_scrape_time(source: DictSource) -> None:
    with serving(source) as server:
        assert scrape(server)[("fedzero_replies_total", ())] == 38
        source.counters["replies"] = 50
        source.counters["replies_dropped"]["late"] = 7
        samples = scrape(server)
    assert samples[("fedzero_replies_total", ())] == 50
    assert samples[("fedzero_replies_dropped_total", (("reason", "late"),))] == 7


def test_metrics_of_an_empty_source() -> None:
    with serving(DictSource()) as server:
        samples = scrape(server)
    assert samples[("fedzero_replies_total", ())] == 0
    assert samples[("fedzero_nodes_online", ())] == 0


# --------------------------------------------------------- page and server


def test_dashboard_is_self_contained(source: DictSource) -> None:
    with serving(source) as server:
        status, headers, body = get(server.url)
        assert get(server.url + "index.html")[2] == body
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    page = body.decode()
    assert "<svg" in page
    assert "fetch(" in page
    for external in ("<script src", '<link rel="stylesheet"', "@import", "url(http", "//cdn"):
        assert external not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


def test_access_log_goes_to_structlog_at_debug(
    source: DictSource, capsys: pytest.CaptureFixture[str]
) -> None:
    with capture_logs() as logs, serving(source) as server:
        get(server.url + "api/nodes")
        get(server.url + "api/missing")
    requests = [e for e in logs if e["event"] == "http_request"]
    assert [(e["path"], e["status"], e["log_level"]) for e in requests] == [
        ("/api/nodes", 200, "debug"),
        ("/api/missing", 404, "debug"),
    ]
    assert capsys.readouterr().err == ""


def test_binds_loopback_by_default_and_warns_otherwise(source: DictSource) -> None:
    with capture_logs() as logs:
        server = StatsServer(source, port=0).start()
        server.stop()
        assert server.url.startswith("http://127.0.0.1:")
        assert not [e for e in logs if e["event"] == "http_public_bind"]
        public = StatsServer(source, address="0.0.0.0", port=0).start()  # noqa: S104
        public.stop()
    warnings = [e for e in logs if e["event"] == "http_public_bind"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"


def test_ipv6_loopback(source: DictSource) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = StatsServer(source, address="::1", port=0).start()
    except ConfigurationError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    try:
        assert server.url.startswith("http://[::1]:")
        assert get_json(server.url + "api/runs")[0]["run_id"] == 2
    finally:
        server.stop()


def test_port_in_use_names_the_address(source: DictSource) -> None:
    with serving(source) as first:
        second = StatsServer(source, port=first.port)
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{first.port}"):
            second.start()


def test_a_link_whose_stats_port_is_taken_serves_anyway(source: DictSource) -> None:
    with serving(source) as taken, capture_logs() as logs:
        address = f"127.0.0.1:{taken.port}"
        with federation(echo, [{}], http_address=address) as (link, _):
            assert link.http_url == ""
            assert len(link.node_ids()) == 1  # the fleet is served all the same
    errors = [e for e in logs if e["event"] == "http_not_started"]
    assert len(errors) == 1
    assert address in errors[0]["error"]


def test_lifecycle(source: DictSource) -> None:
    server = StatsServer(source, port=0)
    with server:
        port = server.port
        assert port != 0
        assert server.start() is server  # idempotent: the same socket, the same port
        assert server.port == port
    server.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        StatsServer(source, port=70000)


def test_parse_http_address() -> None:
    assert parse_http_address("127.0.0.1:9095") == ("127.0.0.1", 9095)
    assert parse_http_address("[::1]:0") == ("::1", 0)
    assert parse_http_address(":9095") == ("127.0.0.1", 9095)
    for bad in ("127.0.0.1", "host:http", "host:70000"):
        with pytest.raises(ValueError, match="host:port"):
            parse_http_address(bad)


# ------------------------------------------------- a real link and real nodes


def test_link_stats_source_with_a_real_link() -> None:
    configs = [{"examples": 3, "partition-id": 0}, {"examples": 5, "partition-id": 1}]
    with federation(echo, configs) as (link, _), contextlib.closing(LinkStatsSource(link)) as src:
        with serving(src) as server, Grid(link.app_endpoint) as grid:
            nodes = grid.get_node_ids(min_nodes=2)
            for rnd in (1, 2):
                train_all(grid, nodes, model(16))
                grid.report(rnd, {"loss": 1.0 / rnd, "accuracy": 0.4 * rnd})
            run_id = grid.run_id
            url = server.url
            wait_until(lambda: len(get_json(f"{url}api/runs/{run_id}/rounds")) == 2)
            rounds = get_json(f"{url}api/runs/{run_id}/rounds")
            assert [r["metrics"] for r in rounds] == [
                {"loss": 1.0, "accuracy": 0.4},
                {"loss": 0.5, "accuracy": 0.8},
            ]
            run = get_json(f"{url}api/runs/{run_id}")
            assert run["status"] == "running"
            assert (run["replies"], run["rounds_done"], run["nodes"]) == (4, 2, 2)
            listed = get_json(f"{url}api/nodes")
            assert sorted(n["node_id"] for n in listed) == sorted(nodes)
            assert all(n["online"] for n in listed)
            stats = get_json(f"{url}api/stats")
            assert stats["replies"] == 4
            assert stats["runs_by_status"] == {"running": 1}
            samples = scrape(server)
            assert samples[("fedzero_nodes_online", ())] == 2
            assert samples[("fedzero_replies_total", ())] == 4
            assert samples[("fedzero_run_rounds", (("run_id", str(run_id)),))] == 2
        with serving(src) as server:  # the Grid said goodbye: the run is finished
            wait_until(lambda: get_json(f"{server.url}api/runs")[0]["status"] == "finished")
            assert get_json(f"{server.url}api/runs/{run_id}")["ended_at"] is not None
            assert scrape(server)[("fedzero_runs", (("status", "finished"),))] == 1
