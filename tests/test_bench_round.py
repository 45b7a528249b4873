"""``fedzero-bench round`` once at tiny size: a real link and real nodes, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_round_bench_json() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedzero.bench",
            "round",
            "--nodes",
            "2",
            "--params",
            "1000",
            "--rounds",
            "2",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=280,
    ).stdout
    report = json.loads(out)
    assert report["benchmark"] == "round"
    assert (report["nodes"], report["params"], report["rounds"], report["layers"]) == (
        2,
        1000,
        2,
        1,
    )
    assert report["model_bytes"] == 4000
    # process isolation (the default): app -> link -> node -> worker and back, no aggregation
    assert report["bytes_per_round"] == {
        "down": 8000,
        "up": 8000,
        "network_floor": 16000,
        "relayed": 4000 + 4 * 2 * 4000 + 2 * 4000,
    }
    for key in ("round_s", "network_floor_s", "relay_floor_s"):
        summary = report[key]
        assert summary["runs"] == 2
        assert 0 < summary["min"] <= summary["median"] <= summary["max"]
    for floor in ("network_floor", "relay_floor"):
        assert report[f"ratio_{floor}"] == pytest.approx(
            report["round_s"]["median"] / report[f"{floor}_s"]["median"]
        )
    # process isolation is timed against thread isolation in the same run
    thread = report["thread"]
    assert thread["isolation"] == "thread"
    assert thread["bytes_per_round"]["relayed"] == 4000 + 2 * 2 * 4000 + 2 * 4000
    assert thread["relay_floor_s"]["runs"] == thread["round_s"]["runs"] == 2
    assert report["ratio_thread"] == pytest.approx(
        report["round_s"]["median"] / thread["round_s"]["median"]
    )
    assert report["link_peak_rss_bytes"] > 1_000_000
    assert report["node_peak_rss_bytes_max"] > 1_000_000
    assert report["startup_s"] > 0
    assert report["link_warmup_s"] > 0
