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
