"""Issue 10, state is the truth: a store that cannot write loses nothing, says so,
refuses new runs, and catches up; what the API reports is what the database holds.

The failing disk is the link's test hook (``store_fail_while:<file>`` in
``FEDZERO_TEST_FAULTS``): every commit fails while the file exists, as on a full disk.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from fedzero.core import FedzeroTimeoutError, Grid, ProtocolError
from fedzero.core.cli import ControlClient
from fedzero.link.store import FAULTS_ENV, InMemoryStore, SqliteReader, SqliteStore, StoreWriter
from tests.apps.echo.echoapp import client as echo
from tests.helpers import BUDGET, federation, http_get, model, train_all, wait_for

pytestmark = pytest.mark.timeout(120)


def _get(url: str) -> tuple[int, Any]:
    status, body = http_get(url)
    return status, json.loads(body)


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file whose existence makes every store commit fail (set before the store starts)."""
    flag = tmp_path / "disk-full"
    monkeypatch.setenv(FAULTS_ENV, f"store_fail_while:{flag}")
    return flag


def test_a_failed_commit_is_retried_until_it_succeeds(tmp_path: Path, full_disk: Path) -> None:
    full_disk.touch()
    writer = StoreWriter(SqliteStore(tmp_path / "link.db"))
    reader = SqliteReader(tmp_path / "link.db")
    try:
        writer.create_run(1, {"lr": 0.1}, "app", 1.0)
        writer.add_event("log", 2.0, run_id=1, data={"line": "kept"})
        wait_for(lambda: bool(writer.degraded), "the writer reports the failing commits")
        assert "injected test fault" in writer.degraded
        assert writer.pending == 2  # queued, not dropped
        assert reader.get_run(1) is None
        full_disk.unlink()
        writer.flush(BUDGET)
        assert writer.degraded == ""
        assert writer.failed == 0
        row = reader.get_run(1)
        assert row is not None
        assert row.status == "running"
        assert [e.data for e in reader.events(run_id=1)] == [{"line": "kept"}]
    finally:
        reader.close()
        writer.close()


def test_a_full_queue_makes_writers_wait_instead_of_growing(
    tmp_path: Path, full_disk: Path
) -> None:
    full_disk.touch()
    writer = StoreWriter(SqliteStore(tmp_path / "link.db"), max_pending=3)
    try:
        writer.create_run(1, {}, "app", 1.0)
        for i in range(2):
            writer.add_event("log", 2.0, run_id=1, data={"i": i})
        wait_for(lambda: bool(writer.degraded), "the writer reports the failing commits")
        queued = threading.Event()

        def one_more() -> None:
            writer.add_event("log", 3.0, run_id=1, data={"i": 2})
            queued.set()

        thread = threading.Thread(target=one_more)
        thread.start()
        wait_for(lambda: writer.pending == 3, "three writes pending")
        assert not queued.is_set()  # back-pressure: it waits for room
        full_disk.unlink()
        assert queued.wait(BUDGET)
        thread.join(BUDGET)
        writer.flush(BUDGET)
        assert writer.pending == 0
        assert writer.failed == 0
    finally:
        writer.close()


def _submit_refused(endpoint: str) -> str:
    with ControlClient(endpoint, timeout=BUDGET) as client:
        app = {"name": "echo", "hash": "0" * 64}
        with pytest.raises(ProtocolError) as refused:
            client.request("submit_run", b"not a bundle", app=app, run_config={})
    return str(refused.value)


def test_a_link_whose_store_cannot_write_is_degraded_refuses_new_runs_and_catches_up(
    tmp_path: Path, full_disk: Path
) -> None:
    state = tmp_path / "state"
    options = {"state_dir": state, "http_address": "127.0.0.1:0"}
    with federation(echo, [{"examples": 1}, {"examples": 2}], **options) as (link, _):
        url = link.http_url
        with Grid(link.app_endpoint) as grid:
            nodes = grid.get_node_ids(min_nodes=2)
            assert all(r.has_content() for r in train_all(grid, nodes, model()))
            grid.report(1, {"accuracy": 0.5})
            link.sync(BUDGET)
            full_disk.touch()  # the disk fills up mid-run
            assert all(r.has_content() for r in train_all(grid, nodes, model()))
            grid.report(2, {"accuracy": 0.75})  # the run goes on
            wait_for(lambda: bool(link.health().degraded), "the link reports itself degraded")
            status, health = _get(f"{url}api/health")
            assert status == 503
            assert health["status"] == "degraded"
            assert health["healthy"] is True  # no thread died: the watchdog goes on
            assert any("cannot write" in r for r in health["reasons"])
            with pytest.raises(ProtocolError, match="refuses new runs"):
                Grid(link.app_endpoint, connect_timeout=BUDGET)
            assert "refuses new runs" in _submit_refused(link.control_endpoint)
            with pytest.raises(FedzeroTimeoutError):  # nothing is committed meanwhile
                link.sync(0.5)
            run_id = grid.run_id
        full_disk.unlink()  # space comes back
        link.sync(BUDGET)
        wait_for(lambda: link.health().status == "ok", "the link is healthy again")
        assert _get(f"{url}api/health")[0] == 200
        api = {r["run_id"]: r for r in _get(f"{url}api/runs")[1]}
        one = _get(f"{url}api/runs/{run_id}")[1]
        reader = SqliteReader(state / "link.db")
        try:
            rows = reader.list_runs()
            assert sorted(api) == [r.run_id for r in reversed(rows)] == [run_id]
            for row in rows:
                for out in (api[row.run_id], one):
                    assert out["status"] == row.status == "finished"
                    assert out["rounds_done"] == row.rounds_done == 2
                    assert out["replies"] == row.replies == 4
                    assert out["messages"] == row.messages_sent == 4
                    assert out["nodes"] == len(row.nodes) == 2
                    assert out["ended_at"] == row.ended_at
            metrics = [r.metrics for r in reader.list_rounds(run_id)]
            assert metrics == [{"accuracy": 0.5}, {"accuracy": 0.75}]  # nothing dropped
            kinds = [e.kind for e in reader.events(run_id=run_id)]
            assert kinds[0] == "run_started"
            assert kinds[-1] == "run_ended"
        finally:
            reader.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_rounds_done_and_nodes_agree_with_the_rounds_table_in_one_commit(
    tmp_path: Path, kind: str
) -> None:
    store = InMemoryStore() if kind == "memory" else SqliteStore(tmp_path / "link.db")
    try:
        store.create_run(1, {}, "app", 1.0)
        store.upsert_round(1, 1, {}, 2.0, replies=2, nodes=[7, 5])
        store.upsert_round(1, 3, {"loss": 0.5}, 3.0, nodes=[9, 5])  # a crash may follow
        row = store.get_run(1)
        assert row is not None
        assert row.rounds_done == 3 == max(r.round for r in store.list_rounds(1))
        assert row.nodes == [5, 7, 9]  # every node of a recorded round, in the same commit
        store.upsert_round(1, 2, {"loss": 0.7}, 4.0)  # a late report lowers nothing
        row = store.get_run(1)
        assert row is not None
        assert row.rounds_done == 3
    finally:
        store.close()
