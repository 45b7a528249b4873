"""Smoke-run the aggregation benchmark at tiny size (benchmarks are not tests)."""

from __future__ import annotations

import json

import pytest

from fedzero.bench import aggregate_command, run_aggregate_bench


def test_bench_report_has_every_kernel() -> None:
    report = run_aggregate_bench(clients=5, params=3000, layers=3, runs=1, threads=1)
    names = [r["kernel"] for r in report["results"]]
    assert names == [
        "fedavg single-fold",
        "fedavg multi-fold",
        "trimmed mean b=1",
        "trimmed mean beta=0.2",
        "median",
        "krum (f=1)",
    ]
    for r in report["results"]:
        assert r["gb_per_s"]["median"] > 0
        assert r["reference"]["gb_per_s"]["median"] > 0
    assert report["copy_gb_per_s"]["median"] > 0
    json.dumps(report)


def test_bench_command_json_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert aggregate_command(3, 100, 1, "float16", 1, None, True) == 0
    out = capsys.readouterr().out
    # warmup() logs one line; where it goes is the CLI's logging setup, not ours
    assert (
        json.loads(out[out.index("\n{") + 1 if not out.startswith("{") else 0 :])["dtype"]
        == "float16"
    )
    assert aggregate_command(0, 100, 1, "float32", 1, None, False) == 2
    assert "error" in capsys.readouterr().out
