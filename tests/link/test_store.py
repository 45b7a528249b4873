"""Conformance tests of the link store: one contract, run against every implementation."""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fedzero.core import ClosedError, FedzeroTimeoutError, UnknownNodeError, UnknownRunError
from fedzero.link.store import (
    SCHEMA_VERSION,
    InMemoryStore,
    LinkStore,
    RunRow,
    SqliteStore,
    StoreError,
    StoreReader,
    StoreWriter,
)

pytestmark = pytest.mark.timeout(30)

UNICODE_CONFIG: dict[str, Any] = {
    "名前": "données ✓",
    "emoji": "🚀 fl",
    "nested": {"list": [1, 2.5, None, True, "ß"], "empty": {}},
    "lr": 0.01,
    "big": 2**62,
}


def _in_thread(fn: Any) -> Any:
    """Run ``fn`` in another thread and return its result (re-raising its error)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result(timeout=10)


class StoreContract:
    """Every LinkStore must pass these; subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Iterator[LinkStore]:
        raise NotImplementedError

    # ------------------------------------------------------------------- runs

    def test_next_run_id_is_monotonic_and_skips_created_ids(self, store: LinkStore) -> None:
        first = store.next_run_id()
        assert first >= 1
        assert store.next_run_id() == first + 1
        store.create_run(first + 10, {}, "", 1.0)
        assert store.next_run_id() == first + 11

    def test_create_and_get_run(self, store: LinkStore) -> None:
        run_id = store.next_run_id()
        store.create_run(run_id, {"num-rounds": 3}, "quickstart@abc123", 100.5)
        row = store.get_run(run_id)
        assert row == RunRow(run_id, "running", {"num-rounds": 3}, "quickstart@abc123", 100.5)
        assert row.ended_at is None
        assert row.nodes == []
        assert store.get_run(run_id + 1) is None

    def test_create_existing_run_raises(self, store: LinkStore) -> None:
        store.create_run(1, {"a": 1}, "", 1.0)
        with pytest.raises(ValueError, match="already exists"):
            store.create_run(1, {"a": 2}, "", 2.0)
        row = store.get_run(1)
        assert row is not None
        assert row.run_config == {"a": 1}

    def test_update_run_sets_every_field(self, store: LinkStore) -> None:
        store.create_run(1, {}, "", 1.0)
        fields: dict[str, Any] = {
            "status": "failed",
            "run_config": {"x": "y"},
            "app": "app@1",
            "ended_at": 9.5,
            "error": "ValueError: boom\nsecond line",
            "traceback": "Traceback...\n  line\n",
            "rounds_done": 4,
            "nodes": [7, 3, 7],
            "messages_sent": 12,
            "replies": 10,
            "failures": 2,
            "bytes_in": 1 << 40,
            "bytes_out": 5,
        }
        store.update_run(1, **fields)
        stored = {**fields, "error": "ValueError: boom", "nodes": [3, 7]}  # one line, a set
        assert store.get_run(1) == RunRow(run_id=1, started_at=1.0, **stored)

    def test_update_run_validates(self, store: LinkStore) -> None:
        store.create_run(1, {}, "", 1.0)
        with pytest.raises(ValueError, match="unknown field"):
            store.update_run(1, colour="red")
        with pytest.raises(ValueError, match="run status must be one of"):
            store.update_run(1, status="exploded")
        with pytest.raises(ValueError, match="replies must be an int >= 0"):
            store.update_run(1, replies=-1)
        with pytest.raises(TypeError, match="run_config: not JSON-serializable"):
            store.update_run(1, run_config={"f": object()})
        with pytest.raises(UnknownRunError, match="run 2"):
            store.update_run(2, status="finished")
        assert store.get_run(1) == RunRow(1, "running", {}, "", 1.0)

    def test_list_runs_newest_first_with_paging(self, store: LinkStore) -> None:
        for run_id in (3, 1, 2, 5, 4):
            store.create_run(run_id, {}, "", float(run_id))
        assert [r.run_id for r in store.list_runs()] == [5, 4, 3, 2, 1]
        assert [r.run_id for r in store.list_runs(limit=2)] == [5, 4]
        assert [r.run_id for r in store.list_runs(limit=2, offset=3)] == [2, 1]
        assert store.list_runs(limit=2, offset=10) == []
        with pytest.raises(ValueError, match=">= 0"):
            store.list_runs(limit=-1)

    def test_mark_interrupted_only_touches_running_runs(self, store: LinkStore) -> None:
        for run_id in (1, 2, 3):
            store.create_run(run_id, {}, "", 1.0)
        store.update_run(2, status="finished", ended_at=5.0)
        assert store.mark_interrupted(42.0) == [1, 3]
        statuses = {r.run_id: (r.status, r.ended_at) for r in store.list_runs()}
        assert statuses == {
            1: ("interrupted", 42.0),
            2: ("finished", 5.0),
            3: ("interrupted", 42.0),
        }
        assert store.mark_interrupted(50.0) == []

    def test_json_round_trip_with_unicode(self, store: LinkStore) -> None:
        store.create_run(1, UNICODE_CONFIG, "appé", 1.0)
        store.upsert_round(1, 1, {"loss": 0.5, "accuracy": 1, "nan": math.nan}, 2.0)
        store.upsert_node(9, "pk✓", UNICODE_CONFIG, 1.0)
        store.add_event("log", 3.0, run_id=1, data={"line": "ünïcödé 🚀", "cfg": UNICODE_CONFIG})
        run = store.get_run(1)
        assert run is not None
        assert run.run_config == UNICODE_CONFIG
        assert run.app == "appé"
        (rnd,) = store.list_rounds(1)
        assert rnd.metrics["loss"] == 0.5
        assert math.isnan(rnd.metrics["nan"])
        assert store.list_nodes()[0].node_config == UNICODE_CONFIG
        assert store.events()[-1].data == {"line": "ünïcödé 🚀", "cfg": UNICODE_CONFIG}

    def test_rows_are_copies_and_json_ready(self, store: LinkStore) -> None:
        store.create_run(1, {"a": [1]}, "", 1.0)
        row = store.get_run(1)
        assert row is not None
        row.run_config["a"].append(2)
        assert store.get_run(1) == RunRow(1, "running", {"a": [1]}, "", 1.0)
        assert json.loads(json.dumps(row.as_dict()))["run_config"] == {"a": [1, 2]}

    def test_non_json_config_raises_and_stores_nothing(self, store: LinkStore) -> None:
        with pytest.raises(TypeError, match="run_config"):
            store.create_run(1, {"b": b"bytes"}, "", 1.0)
        assert store.get_run(1) is None

    # ----------------------------------------------------------------- rounds

    def test_upsert_round_inserts_and_merges(self, store: LinkStore) -> None:
        store.create_run(1, {}, "", 1.0)
        store.upsert_round(1, 2, {"loss": 0.4}, 20.0, round_secs=1.5, replies=3, failures=1)
        store.upsert_round(1, 1, {"loss": 0.9}, 10.0)
        store.upsert_round(1, 2, {"accuracy": 0.8, "loss": 0.3}, 21.0, replies=4)
        rounds = store.list_rounds(1)
        assert [r.as_dict() for r in rounds] == [
            {
                "run_id": 1,
                "round": 1,
                "metrics": {"loss": 0.9},
                "at": 10.0,
                "round_secs": None,
                "replies": 0,
                "failures": 0,
            },
            {
                "run_id": 1,
                "round": 2,
                "metrics": {"loss": 0.3, "accuracy": 0.8},
                "at": 21.0,
                "round_secs": 1.5,
                "replies": 4,
                "failures": 1,
            },
        ]
        assert store.list_rounds(2) == []

    def test_upsert_round_of_unknown_run_raises(self, store: LinkStore) -> None:
        with pytest.raises(UnknownRunError):
            store.upsert_round(5, 1, {"loss": 1.0}, 1.0)

    # ------------------------------------------------------------------ nodes

    def test_nodes_register_refresh_and_go_offline(self, store: LinkStore) -> None:
        store.upsert_node(20, None, {"partition": 1}, 5.0)
        store.upsert_node(10, "key-a", {}, 6.0)
        store.upsert_node(20, "key-b", {"partition": 2}, 7.0)
        store.set_node_online(10, False, 8.0)
        store.update_node_traffic(20, 100, 200, 9.0)
        nodes = {n.node_id: n for n in store.list_nodes()}
        assert list(nodes) == [10, 20]
        assert (nodes[10].online, nodes[10].last_seen, nodes[10].first_seen) == (False, 8.0, 6.0)
        assert nodes[20].as_dict() == {
            "node_id": 20,
            "public_key": "key-b",
            "node_config": {"partition": 2},
            "first_seen": 5.0,
            "last_seen": 9.0,
            "online": True,
            "bytes_in": 100,
            "bytes_out": 200,
        }
        store.upsert_node(10, "key-a", {}, 10.0)  # re-registration keeps counters
        store.update_node_traffic(10, 1, 2, 10.0)
        store.upsert_node(10, "key-a", {}, 11.0)
        back = {n.node_id: n for n in store.list_nodes()}[10]
        assert (back.online, back.bytes_in, back.bytes_out, back.first_seen) == (True, 1, 2, 6.0)

    def test_unknown_node_raises(self, store: LinkStore) -> None:
        with pytest.raises(UnknownNodeError):
            store.set_node_online(1, True, 1.0)
        with pytest.raises(UnknownNodeError):
            store.update_node_traffic(1, 0, 0, 1.0)

    def test_mark_nodes_offline(self, store: LinkStore) -> None:
        store.upsert_node(1, None, {}, 1.0)
        store.upsert_node(2, None, {}, 1.0, online=False)
        store.upsert_node(3, None, {}, 1.0)
        assert store.mark_nodes_offline(5.0) == [1, 3]
        assert not any(n.online for n in store.list_nodes())
        assert store.mark_nodes_offline(6.0) == []

    # ----------------------------------------------------------------- events

    def test_events_page_by_id_and_filter_by_run(self, store: LinkStore) -> None:
        ids = [
            store.add_event("node_registered", 1.0, node_id=7, data={"key": None}),
            store.add_event("run_started", 2.0, run_id=1),
            store.add_event("log", 3.0, run_id=2, data={"line": "x"}),
            store.add_event("round_aggregated", 4.0, run_id=1, data={"round": 1}),
            store.add_event("run_ended", 5.0, run_id=1, data={"status": "finished"}),
        ]
        assert ids == sorted(ids)
        assert len(set(ids)) == 5
        all_events = store.events()
        assert [e.id for e in all_events] == ids
        assert all_events[0].as_dict() == {
            "id": ids[0],
            "at": 1.0,
            "kind": "node_registered",
            "run_id": None,
            "node_id": 7,
            "data": {"key": None},
        }
        assert [e.id for e in store.events(since_id=ids[1], limit=2)] == ids[2:4]
        assert [e.kind for e in store.events(run_id=1)] == [
            "run_started",
            "round_aggregated",
            "run_ended",
        ]
        assert [e.id for e in store.events(since_id=ids[1], run_id=1, limit=1)] == [ids[3]]
        assert store.events(since_id=ids[-1]) == []

    def test_follow_by_paging_sees_every_event_once(self, store: LinkStore) -> None:
        for i in range(25):
            store.add_event("log", float(i), run_id=1, data={"i": i})
        seen: list[int] = []
        since = 0
        while page := store.events(since_id=since, run_id=1, limit=10):
            seen += [e.data["i"] for e in page]
            since = page[-1].id
        assert seen == list(range(25))

    def test_bad_event_kind_raises(self, store: LinkStore) -> None:
        for kind in ("", "has space", "x" * 65, "semi;colon"):
            with pytest.raises(ValueError, match="event kind"):
                store.add_event(kind, 1.0)
        assert store.events() == []

    # ------------------------------------------------------ batches, threads

    def test_batch_undoes_only_the_failing_call(self, store: LinkStore) -> None:
        with store.batch():
            store.create_run(1, {}, "", 1.0)
            with pytest.raises(UnknownRunError):
                store.upsert_round(2, 1, {}, 1.0)
            store.add_event("run_started", 1.0, run_id=1)
        assert store.get_run(1) is not None
        assert [e.kind for e in store.events()] == ["run_started"]

    def test_reader_in_another_thread_sees_committed_data(self, store: LinkStore) -> None:
        reader = store.reader()
        try:
            store.create_run(1, UNICODE_CONFIG, "", 1.0)
            store.add_event("run_started", 1.0, run_id=1)
            run: RunRow | None = _in_thread(lambda: reader.get_run(1))
            assert run is not None
            assert run.run_config == UNICODE_CONFIG
            assert _in_thread(lambda: [e.kind for e in reader.events()]) == ["run_started"]
            assert _in_thread(lambda: len(reader.list_runs())) == 1
        finally:
            reader.close()
        with pytest.raises(ClosedError):
            reader.list_nodes()
        assert store.get_run(1) is not None  # closing a reader leaves the store open

    def test_closed_store_raises(self, store: LinkStore) -> None:
        store.close()
        store.close()  # idempotent
        with pytest.raises(ClosedError):
            store.get_run(1)
        with pytest.raises(ClosedError):
            store.add_event("log", 1.0)

    # ----------------------------------------------------------------- writer

    def test_writer_flush_commits_everything_queued(self, store: LinkStore) -> None:
        writer = StoreWriter(store)
        reader = writer.reader()
        try:
            run_id = writer.next_run_id()
            writer.create_run(run_id, {"a": 1}, "app", 1.0)
            for i in range(2000):
                writer.add_event("log", float(i), run_id=run_id, data={"i": i})
            writer.upsert_node(3, None, {}, 1.0)
            writer.set_node_online(3, False, 2.0)
            writer.update_node_traffic(3, 10, 20, 2.5)
            writer.upsert_round(run_id, 1, {"loss": 1.0}, 2.0, replies=1)
            writer.update_run(run_id, rounds_done=1, nodes=[3])
            writer.end_run(run_id, "failed", 3.0, error="boom")
            writer.flush(timeout=10)
            assert writer.pending == 0
            assert writer.failed == 0
            run = _in_thread(lambda: reader.get_run(run_id))
            assert (run.status, run.ended_at, run.error, run.nodes) == ("failed", 3.0, "boom", [3])
            events = _in_thread(lambda: reader.events(run_id=run_id, limit=5000))
            assert [e.data["i"] for e in events] == list(range(2000))
            assert reader.list_rounds(run_id)[0].replies == 1
            assert reader.list_nodes()[0].as_dict()["bytes_out"] == 20
        finally:
            reader.close()
            writer.close()
        with pytest.raises(ClosedError):
            store.get_run(1)  # the writer owns and closes the store

    def test_writer_validates_at_the_call_site(self, store: LinkStore) -> None:
        with StoreWriter(store) as writer:
            with pytest.raises(ValueError, match="unknown field"):
                writer.update_run(1, colour="red")
            with pytest.raises(ValueError, match="run status"):
                writer.end_run(1, "done", 1.0)
            with pytest.raises(ValueError, match="event kind"):
                writer.add_event("no spaces please", 1.0)
            assert writer.pending == 0

    def test_writer_survives_failing_writes(self, store: LinkStore) -> None:
        with StoreWriter(store) as writer:
            writer.create_run(1, {}, "", 1.0)
            writer.update_run(99, status="finished")  # unknown run: fails in the thread
            writer.set_node_online(5, True, 1.0)  # unknown node
            writer.add_event("run_started", 1.0, run_id=1)
            writer.flush(timeout=10)
            assert writer.failed == 2
            reader = writer.reader()
            assert [e.kind for e in reader.events()] == ["run_started"]
            reader.close()

    def test_writer_copies_arguments(self, store: LinkStore) -> None:
        config: dict[str, Any] = {"a": 1}
        nodes = [1]
        with StoreWriter(store) as writer:
            writer.create_run(1, config, "", 1.0)
            writer.update_run(1, nodes=nodes)
            config["a"] = 2
            nodes.append(2)
            writer.flush(timeout=10)
            reader = writer.reader()
            run = reader.get_run(1)
            reader.close()
        assert run is not None
        assert (run.run_config, run.nodes) == ({"a": 1}, [1])

    def test_writer_close_is_idempotent_and_final(self, store: LinkStore) -> None:
        writer = StoreWriter(store)
        writer.add_event("log", 1.0)
        writer.close()
        writer.close()
        with pytest.raises(ClosedError):
            writer.add_event("log", 2.0)


class TestInMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[LinkStore]:
        store = InMemoryStore()
        yield store
        store.close()

    def test_event_log_is_bounded(self) -> None:
        store = InMemoryStore(max_events=3)
        ids = [store.add_event("log", float(i)) for i in range(5)]
        assert [e.id for e in store.events()] == ids[2:]
        store.close()


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LinkStore]:
        store = SqliteStore(tmp_path / "state" / "link.db")
        yield store
        store.close()

    def test_database_settings(self, tmp_path: Path) -> None:
        store = SqliteStore(tmp_path / "link.db")
        try:
            with sqlite3.connect(tmp_path / "link.db") as conn:
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert conn.execute("SELECT version FROM schema_version").fetchall() == [
                    (SCHEMA_VERSION,)
                ]
            conn.close()
        finally:
            store.close()

    def test_reopen_keeps_history_and_continues_run_ids(self, tmp_path: Path) -> None:
        path = tmp_path / "link.db"
        store = SqliteStore(path)
        for _ in range(3):
            store.create_run(store.next_run_id(), UNICODE_CONFIG, "", 1.0)
        store.update_run(2, status="finished")
        store.upsert_node(4, None, {}, 1.0)
        event_id = store.add_event("log", 1.0)
        store.close()
        store = SqliteStore(path)
        try:
            assert store.next_run_id() == 4
            assert store.mark_interrupted(9.0) == [1, 3]
            assert store.mark_nodes_offline(9.0) == [4]
            assert store.get_run(2) == RunRow(2, "finished", UNICODE_CONFIG, "", 1.0)
            assert store.add_event("log", 2.0) > event_id
        finally:
            store.close()

    def test_event_ids_are_not_reused_after_deleting_the_last(self, tmp_path: Path) -> None:
        path = tmp_path / "link.db"
        store = SqliteStore(path)
        last = store.add_event("log", 1.0)
        store.close()
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM events")
        conn.close()
        store = SqliteStore(path)
        try:
            assert store.add_event("log", 2.0) > last
        finally:
            store.close()

    def test_second_store_on_the_same_file_is_refused(self, tmp_path: Path) -> None:
        store = SqliteStore(tmp_path / "link.db")
        try:
            with pytest.raises(StoreError, match="in use by another process"):
                SqliteStore(tmp_path / "link.db")
        finally:
            store.close()
        SqliteStore(tmp_path / "link.db").close()  # free again once closed

    def test_refuses_foreign_and_newer_databases(self, tmp_path: Path) -> None:
        (tmp_path / "junk.db").write_bytes(b"definitely not sqlite" * 100)
        with pytest.raises(StoreError, match="cannot open link store"):
            SqliteStore(tmp_path / "junk.db")
        with sqlite3.connect(tmp_path / "other.db") as conn:
            conn.execute("CREATE TABLE t (x)")
        conn.close()
        with pytest.raises(StoreError, match="not a fedzero link state database"):
            SqliteStore(tmp_path / "other.db")
        SqliteStore(tmp_path / "new.db").close()
        with sqlite3.connect(tmp_path / "new.db") as conn:
            conn.execute("UPDATE schema_version SET version = 999")
        conn.close()
        with pytest.raises(StoreError, match="newer than this fedzero"):
            SqliteStore(tmp_path / "new.db")

    def test_reader_sees_only_committed_data_and_never_waits(self, store: LinkStore) -> None:
        store.create_run(1, {}, "", 1.0)
        reader: StoreReader = store.reader()
        try:
            with store.batch():  # a write transaction stays open on the writer's connection
                store.update_run(1, status="finished")
                store.add_event("run_ended", 2.0, run_id=1)
                inside = _in_thread(lambda: (reader.get_run(1), reader.events()))
            after = _in_thread(lambda: (reader.get_run(1), reader.events()))
        finally:
            reader.close()
        assert (inside[0].status, inside[1]) == ("running", [])
        assert (after[0].status, [e.kind for e in after[1]]) == ("finished", ["run_ended"])

    def test_flushed_writes_survive_sigkill(self, tmp_path: Path) -> None:
        path = tmp_path / "link.db"
        script = textwrap.dedent(f"""
            import sys, threading
            import structlog
            structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
            from fedzero.link.store import SqliteStore
            from fedzero.link.store import StoreWriter
            writer = StoreWriter(SqliteStore({str(path)!r}))
            for _ in range(3):
                run_id = writer.next_run_id()
                writer.create_run(run_id, {{"é": run_id}}, "app", 1.0)
                writer.upsert_round(run_id, 1, {{"loss": 0.5}}, 2.0)
            for i in range(500):
                writer.add_event("log", float(i), run_id=1, data={{"i": i}})
            writer.update_run(2, status="finished", ended_at=3.0)
            writer.flush(timeout=20)
            print("flushed", flush=True)
            threading.Event().wait()
        """)
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"flushed\n"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        assert Path(f"{path}-wal").exists()  # not checkpointed: recovery replays the WAL
        store = SqliteStore(path)
        try:
            assert store.next_run_id() == 4
            assert store.mark_interrupted(9.0) == [1, 3]
            assert [r.status for r in store.list_runs()] == [
                "interrupted",
                "finished",
                "interrupted",
            ]
            # rounds_done agrees with the rounds table (round 1 was upserted), after SIGKILL too
            expected = RunRow(3, "interrupted", {"é": 3}, "app", 1.0, 9.0, rounds_done=1)
            assert store.get_run(3) == expected
            assert [e.data["i"] for e in store.events(limit=1000)] == list(range(500))
            assert store.list_rounds(2)[0].metrics == {"loss": 0.5}
        finally:
            store.close()


def test_writer_flush_times_out_while_the_store_is_stuck() -> None:
    gate = threading.Event()
    inner = InMemoryStore()

    class Stuck(InMemoryStore):
        def add_event(self, *args: Any, **kwargs: Any) -> int:
            gate.wait(20)
            return inner.add_event(*args, **kwargs)

    writer = StoreWriter(Stuck())
    try:
        writer.add_event("log", 1.0)
        with pytest.raises(FedzeroTimeoutError, match="1 writes still pending"):
            writer.flush(timeout=0.05)
        gate.set()
        writer.flush(timeout=10)
        assert len(inner.events()) == 1
    finally:
        gate.set()
        writer.close()
