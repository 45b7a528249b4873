"""The dashboard in a real browser: Debian's headless Chromium renders the page (no selenium).

``--dump-dom`` gives the DOM after the page's scripts ran (``--virtual-time-budget``
lets its timers and fetches run), and the page keeps its state in data-* attributes
(``#run[data-rounds]``, ``svg.chart[data-metric]``, ``circle.pt[data-value]``), so
the tests read what an operator would see. Skipped when Chromium is not installed.
"""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from fedzero.link.http import StatsServer
from tests.link.test_http import DictSource, serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).parent.parent / "artifacts"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)"
    ),
]


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    chart: str | None  # data-metric of the enclosing svg.chart, if any
    text: list[str] = field(default_factory=list)


class DomIndex(HTMLParser):
    """Every element of a dumped DOM with its attributes, and the chart it sits in."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._charts: list[str | None] = []
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        chart = self._charts[-1] if self._charts else None
        if tag == "svg":
            chart = values.get("data-metric") if "chart" in values.get("class", "") else chart
            self._charts.append(chart)
        element = Element(tag, values, chart)
        self.elements.append(element)
        self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg" and self._charts:
            self._charts.pop()
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text.append(data)

    def by_id(self, element_id: str) -> Element:
        found = [e for e in self.elements if e.attrs.get("id") == element_id]
        assert len(found) == 1, f"expected one #{element_id}, found {len(found)}"
        return found[0]

    def charts(self) -> dict[str, Element]:
        return {
            e.attrs["data-metric"]: e
            for e in self.elements
            if e.tag == "svg" and "chart" in e.attrs.get("class", "")
        }

    def points(self, metric: str) -> list[tuple[int, float]]:
        return [
            (int(e.attrs["data-round"]), float(e.attrs["data-value"]))
            for e in self.elements
            if e.tag == "circle" and e.chart == metric and "pt" in e.attrs.get("class", "")
        ]


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    profile = tmp_path / f"chromium-profile-{len(os.listdir(tmp_path))}"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        *args,
        url,
    ]
    return subprocess.run(command, capture_output=True, timeout=90, check=True, cwd=tmp_path)


def dump_dom(tmp_path: Path, url: str) -> DomIndex:
    html = chromium(tmp_path, url, "--dump-dom").stdout.decode()
    dom = DomIndex(html)
    assert next(e for e in dom.elements if e.tag == "body").attrs["data-state"] == "ready", html
    return dom


@pytest.fixture
def finished() -> DictSource:
    source = DictSource()
    source.add_run(7, "finished", ended_at=1_700_000_100.0)
    for loss, accuracy in ((2.25, 0.31), (1.125, 0.62), (0.5, 0.875)):
        source.add_round(7, {"loss": loss, "accuracy": accuracy, "note": [1, 2]}, round_secs=1.5)
    source.add_node(6216688596557085261, node_config={"partition-id": 0})  # 63-bit, as real ids
    source.add_node(42, online=False)
    return source


@pytest.fixture
def server(finished: DictSource) -> Iterator[StatsServer]:
    with serving(finished) as srv:
        yield srv


def test_shows_a_finished_run_with_its_charts(
    tmp_path: Path, finished: DictSource, server: StatsServer
) -> None:
    dom = dump_dom(tmp_path, server.url)
    run = dom.by_id("run")
    assert (run.attrs["data-run-id"], run.attrs["data-status"]) == ("7", "finished")
    assert run.attrs["data-rounds"] == "3"
    assert "Run #7" in "".join(run.text)
    charts = dom.charts()
    assert set(charts) == {"loss", "accuracy", "round_secs"}  # lists are not charted
    assert charts["loss"].attrs["data-points"] == "3"
    assert dom.points("loss") == [(1, 2.25), (2, 1.125), (3, 0.5)]
    assert dom.points("accuracy") == [(1, 0.31), (2, 0.62), (3, 0.875)]
    assert dom.points("round_secs") == [(1, 1.5), (2, 1.5), (3, 1.5)]
    rows = [e for e in dom.elements if e.tag == "tr" and "data-run-id" in e.attrs]
    assert [(r.attrs["data-run-id"], r.attrs["data-status"]) for r in rows] == [("7", "finished")]
    nodes = {
        e.attrs["data-node-id"]: e.attrs["data-online"]
        for e in dom.elements
        if e.tag == "tr" and "data-node-id" in e.attrs
    }
    assert nodes == {"6216688596557085261": "true", "42": "false"}  # exact 63-bit digits


def test_follows_a_running_run(tmp_path: Path, finished: DictSource, server: StatsServer) -> None:
    finished.add_run(8)
    finished.add_round(8, {"loss": 3.0})
    finished.add_round(8, {"loss": 2.0})
    first = dump_dom(tmp_path, server.url)
    run = first.by_id("run")
    assert (run.attrs["data-run-id"], run.attrs["data-status"]) == ("8", "running")
    assert run.attrs["data-rounds"] == "2"
    assert first.points("loss") == [(1, 3.0), (2, 2.0)]

    finished.add_round(8, {"loss": 1.5, "accuracy": 0.5})
    second = dump_dom(tmp_path, server.url)
    assert second.by_id("run").attrs["data-rounds"] == "3"
    assert second.points("loss") == [(1, 3.0), (2, 2.0), (3, 1.5)]
    assert second.points("accuracy") == [(3, 0.5)]

    with finished.lock:
        finished.run_rows[8].update(status="finished", ended_at=1_700_000_200.0)
    third = dump_dom(tmp_path, server.url)
    assert third.by_id("run").attrs["data-status"] == "finished"


class GrowOnPoll(DictSource):
    """Adds a round to run 9 when the page asks for its rounds the third time (after it rendered)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0
        self._asked_lock = threading.Lock()

    def rounds(self, run_id: int) -> list[dict[str, Any]]:
        with self._asked_lock:
            self.asked += run_id == 9
            grow = run_id == 9 and self.asked == 3
        if grow:
            self.add_round(9, {"loss": 0.75})
        return super().rounds(run_id)


def test_polls_while_the_page_is_open(tmp_path: Path) -> None:
    source = GrowOnPoll()
    source.add_run(9)
    with serving(source) as srv:
        dom = dump_dom(tmp_path, srv.url)
    assert source.asked > 3  # it kept polling after the round arrived
    assert dom.by_id("run").attrs["data-rounds"] == "1"
    assert dom.points("loss") == [(1, 0.75)]


def test_unknown_run_in_the_address_falls_back(tmp_path: Path, server: StatsServer) -> None:
    dom = dump_dom(tmp_path, server.url + "#run-12345")
    assert dom.by_id("run").attrs["data-run-id"] == "7"


def operator_view() -> DictSource:
    """A link as an operator sees it: a run going on, one finished, one failed, four nodes."""
    source, now = DictSource(), time.time()
    source.add_run(1, "finished", started_at=now - 3900, ended_at=now - 3600, nodes=4)
    source.add_run(2, "failed", started_at=now - 1800, ended_at=now - 1790, error="ValueError: x")
    source.add_run(3, started_at=now - 40, nodes=4)
    for run_id, rounds in ((1, 20), (3, 9)):
        for i in range(rounds):
            metrics = {
                "loss": 2.2 * math.exp(-i / 4) + 0.15,
                "accuracy": 0.93 - 0.7 * math.exp(-i / 3),
            }
            source.add_round(run_id, metrics, round_secs=2.0 + 0.4 * math.sin(i))
    for i in range(4):
        source.add_node(
            6216688596557085261 + 7919 * i,
            online=i != 3,
            bytes_in=(i + 1) * 9_500_000,
            bytes_out=(i + 1) * 6_200_000,
        )
    source.counters.update(
        {
            "replies": 114,
            "failures": {"node_unavailable": 2},
            "replies_dropped": {"duplicate": 1},
            "bytes_in": 95_000_000,
            "bytes_out": 62_000_000,
        }
    )
    return source


def test_screenshot(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    with serving(operator_view()) as server:
        chromium(tmp_path, server.url, f"--screenshot={shot}", "--window-size=1280,900")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1280, 900)
    assert len(data) > 30_000  # a blank or error page compresses to a few KB
