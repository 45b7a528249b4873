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
        timeout=60,
    ).stdout
    report = json.loads(out)
    assert report["benchmark"] == "codec"
    assert len(report["results"]) == 2
    assert all(r["speedup_median"] > 0 for r in report["results"])
