"""Several runs on one link and the same nodes: submitted as bundles, supervised, stoppable."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fedzero.core.bundles import build_bundle
from fedzero.core.cli import ControlClient
from tests.multirun.conftest import Federation, make_app

pytestmark = pytest.mark.timeout(120)


def _submit(client: ControlClient, app_dir: Path, **config: Any) -> int:
    bundle = build_bundle(app_dir)
    app = {"name": bundle.name, "hash": bundle.hash}
    _, header = client.request("submit_run", bundle.data, app=app, run_config=config)
    return int(header["run_id"])


def _row(client: ControlClient, run_id: int) -> dict[str, Any]:
    return client.wait_done(run_id, timeout=90)


def _final_w(fed: Federation, run_id: int) -> float:
    from fedzero.link.store import SqliteReader

    store = SqliteReader(fed.tmp / "state" / "link.db")
    try:
        rounds = store.list_rounds(run_id)
        return float(rounds[-1].metrics["w"])
    finally:
        store.close()


def test_two_apps_at_once_give_what_each_gives_alone(
    tmp_path: Path, federation: Federation
) -> None:
    a, b = make_app(tmp_path, "alpha"), make_app(tmp_path, "beta")
    with federation.client() as client:
        solo_a = _submit(client, a, step=1.0, nodes=4)
        assert _row(client, solo_a)["status"] == "finished"
        solo_b = _submit(client, b, step=-2.0, nodes=4)
        assert _row(client, solo_b)["status"] == "finished"
        both = [_submit(client, a, step=1.0, nodes=4), _submit(client, b, step=-2.0, nodes=4)]
        rows = [_row(client, r) for r in both]
    assert [r["status"] for r in rows] == ["finished", "finished"]
    assert _final_w(federation, both[0]) == pytest.approx(_final_w(federation, solo_a))
    assert _final_w(federation, both[1]) == pytest.approx(_final_w(federation, solo_b))
    assert _final_w(federation, solo_a) == pytest.approx(3 * 2.5)  # 3 rounds of mean(1..4) * 1.0


def test_failing_server_apps_are_reported_and_others_unaffected(
    tmp_path: Path, federation: Federation
) -> None:
    broken = make_app(tmp_path, "broken", import_error=True)
    late = make_app(tmp_path, "late")
    fine = make_app(tmp_path, "fine")
    with federation.client() as client:
        runs = [
            _submit(client, broken),
            _submit(client, late, **{"fail-at": 2}),
            _submit(client, fine, nodes=4),
        ]
        rows = [_row(client, r) for r in runs]
        _, header = client.request("logs", run_id=runs[1], since_id=0, follow=False)
    assert [r["status"] for r in rows] == ["failed", "failed", "finished"]
    assert "cannot import 'broken.server'" in rows[0]["error"]
    assert "this ServerApp cannot be imported" in rows[0]["error"]
    assert "RuntimeError: boom in round 2" in rows[1]["error"]
    assert any(
        "Traceback" in e["data"].get("line", "") for e in header["events"] if e["kind"] == "log"
    )


def test_stop_ends_the_run_and_log_follow_streams(tmp_path: Path, federation: Federation) -> None:
    app = make_app(tmp_path, "slow")
    with federation.client() as client:
        run_id = _submit(client, app, slow=30, **{"num-rounds": 100})
        follow_log = ["log", str(run_id), "--follow", "--link", federation.control]
        cmd = [sys.executable, "-m", "fedzero.core.cli", *follow_log]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as follow:
            try:
                assert follow.stdout is not None
                first = follow.stdout.readline()  # streamed as it happens, before the run ends
                assert "run_started" in first
                _, header = client.request("stop_run", run_id=run_id)
                stopped = time.monotonic()
                assert header["status"] == "stopped"
                assert follow.wait(20) == 0  # the stream ends with the run
                assert time.monotonic() - stopped < 10
            finally:
                if follow.poll() is None:
                    follow.kill()
        row = _row(client, run_id)
    assert row["status"] == "stopped"


def test_allow_list_refuses_unknown_bundles_and_killed_workers_are_replaced(
    tmp_path: Path, federation: Federation
) -> None:
    app = make_app(tmp_path, "crashy")
    other = make_app(tmp_path, "other")
    allowed = tmp_path / "allowed.txt"
    allowed.write_text(build_bundle(app).hash + "\n")
    strict = ["-m", "fedzero.node", "--link", f"ipc://{federation.tmp}/fleet"]
    strict += ["--allowed-bundles", str(allowed), "--node-config", "partition-id=9"]
    federation.procs.spawn(strict, federation.tmp / "strict.log")
    marker = tmp_path / "crashed"
    with federation.client() as client:
        _, header = client.request("list_nodes")
        deadline = time.monotonic() + 30
        while (
            len([n for n in header["nodes"] if n.get("online")]) < 5 and time.monotonic() < deadline
        ):
            _, header = client.request("list_nodes")  # each answer is a round trip to the link
        strict = next(
            n["node_id"] for n in header["nodes"] if n["node_config"].get("partition-id") == 9
        )
        crash = _submit(client, app, nodes=5, **{"crash-once": str(marker), "num-rounds": 3})
        row = _row(client, crash)
        assert row["status"] == "finished"  # one worker died once, was replaced, the run went on
        assert marker.exists()
        refused = _submit(client, other, nodes=5, **{"num-rounds": 1})
        row = _row(client, refused)
    assert row["status"] == "finished"
    from fedzero.link.store import SqliteReader

    store = SqliteReader(federation.tmp / "state" / "link.db")
    try:
        events = store.events(run_id=refused)
    finally:
        store.close()
    # the strict node refused the other bundle: its failure is in the round's log
    failed = [e.data["failed"] for e in events if e.kind == "round_aggregated"]
    assert failed
    assert "allow-list" in failed[0][str(strict)]
