"""Benchmarks run once at tiny size, so they cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.timeout(60)
def test_codec_bench_json() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedzero.bench",
            "codec",
            "--megabytes",
            "1",
            "--runs",
            "2",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    report = json.loads(out)
    assert report["benchmark"] == "codec"
    assert len(report["results"]) == 2
    for r in report["results"]:
        assert r["speedup_median"] > 0
        assert r["speedup_over_ipc_median"] > 0  # the figure that moves the bytes
        assert r["fedzero_over_ipc_s"]["runs"] == r["safetensors_over_ipc_s"]["runs"]


@pytest.mark.timeout(120)
def test_fleet_bench_json() -> None:
    """A swarm of 50 nodes on a real link: all register, none is taken offline, exact round."""
    args = ["--nodes", "50", "--window", "2", "--rounds", "1", "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "fedzero.bench", "fleet", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=110,
    ).stdout
    report = json.loads(out)
    assert report["benchmark"] == "fleet"
    assert report["swarm"]["registered"] == 50
    assert report["round_error"] == ""  # every round aggregated all 50 replies
    assert len(report["round_s"]["runs"]) == 1
    assert report["aggregate_exact"]
    assert report["false_offlines_total"] == 0
    assert report["idle_cpu_pct"] >= 0
