"""The link store in dicts: for tests and for a link without a state directory.

Values go through the same JSON encoding as in SQLite, so the two behave alike
(the conformance tests in ``tests/link/test_store.py`` hold both to it).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Unpack

from fedzero.core import ClosedError, UnknownNodeError, UnknownRunError

from ._protocol import (
    EventRow,
    NodeRow,
    RoundRow,
    RoundStats,
    RunIds,
    RunRow,
    StoreReader,
    check_event,
    check_page,
    check_run_fields,
    dumps,
    loads_object,
    merge_round,
    merged_nodes,
    node_row_from,
    run_row_from,
)


class InMemoryStore:
    """A :class:`LinkStore` in dicts, with the same JSON semantics as SQLite.

    Thread-safe (one lock); :meth:`reader` returns a view that shares the data.

    Args:
        max_events: the event log keeps this many newest events (a long-running
            link without a state directory must not grow without bound).
    """

    def __init__(self, *, max_events: int = 100_000) -> None:
        self._lock = threading.RLock()
        self._ids = RunIds(1)
        self._event_ids = itertools.count(1)
        self._runs: dict[int, dict[str, Any]] = {}
        self._rounds: dict[tuple[int, int], dict[str, Any]] = {}
        self._nodes: dict[int, dict[str, Any]] = {}
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_events)
        self._closed = False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise ClosedError("the link store is closed")
            yield

    # Every method validates before it mutates, so a failing call changes nothing.

    def next_run_id(self) -> int:
        return self._ids.take()

    def create_run(
        self, run_id: int, run_config: Mapping[str, Any], app: str, started_at: float
    ) -> None:
        config = dumps(dict(run_config), "run_config")
        with self._locked():
            if run_id in self._runs:
                raise ValueError(f"run {run_id} already exists")
            row = RunRow(run_id, "running", {}, str(app), float(started_at)).as_dict()
            self._runs[run_id] = {**row, "run_config": config, "nodes": "[]"}
            self._ids.seen(run_id)

    def update_run(self, run_id: int, **fields: Any) -> None:
        values = check_run_fields(fields)
        with self._locked():
            if run_id not in self._runs:
                raise UnknownRunError(f"run {run_id} is not in the link store")
            self._runs[run_id].update(values)

    def get_run(self, run_id: int) -> RunRow | None:
        with self._locked():
            raw = self._runs.get(run_id)
            return None if raw is None else run_row_from(raw)

    def list_runs(self, limit: int = 100, offset: int = 0) -> list[RunRow]:
        check_page(limit, offset)
        with self._locked():
            ids = sorted(self._runs, reverse=True)[offset : offset + limit]
            return [run_row_from(self._runs[i]) for i in ids]

    def upsert_round(
        self,
        run_id: int,
        round: int,
        metrics: Mapping[str, Any],
        at: float,
        **stats: Unpack[RoundStats],
    ) -> None:
        new = dumps(dict(metrics), "metrics")
        with self._locked():
            if run_id not in self._runs:
                raise UnknownRunError(f"run {run_id} is not in the link store")
            columns = merge_round(self._rounds.get((run_id, round)), new, stats)
            row = {"run_id": run_id, "round": round, "at": float(at), **columns}
            self._rounds[(run_id, round)] = row
            run = self._runs[run_id]  # rounds_done agrees with the rounds table
            run["rounds_done"] = max(run["rounds_done"], round)
            nodes = merged_nodes(run["nodes"], stats)
            if nodes is not None:
                run["nodes"] = nodes

    def list_rounds(self, run_id: int) -> list[RoundRow]:
        with self._locked():
            keys = sorted(k for k in self._rounds if k[0] == run_id)
            return [
                RoundRow(**{**self._rounds[k], "metrics": loads_object(self._rounds[k]["metrics"])})
                for k in keys
            ]

    def upsert_node(
        self,
        node_id: int,
        public_key: str | None,
        node_config: Mapping[str, Any],
        seen_at: float,
        online: bool = True,
    ) -> None:
        config = dumps(dict(node_config), "node_config")
        with self._locked():
            old = self._nodes.get(node_id)
            self._nodes[node_id] = {
                "node_id": node_id,
                "public_key": public_key,
                "node_config": config,
                "first_seen": old["first_seen"] if old else float(seen_at),
                "last_seen": float(seen_at),
                "online": bool(online),
                "bytes_in": old["bytes_in"] if old else 0,
                "bytes_out": old["bytes_out"] if old else 0,
            }

    def set_node_online(self, node_id: int, online: bool, at: float) -> None:
        with self._locked():
            node = self._node(node_id)
            node.update(online=bool(online), last_seen=float(at))

    def update_node_traffic(
        self, node_id: int, bytes_in: int, bytes_out: int, seen_at: float
    ) -> None:
        with self._locked():
            node = self._node(node_id)
            node.update(bytes_in=int(bytes_in), bytes_out=int(bytes_out), last_seen=float(seen_at))

    def list_nodes(self) -> list[NodeRow]:
        with self._locked():
            return [node_row_from(self._nodes[i]) for i in sorted(self._nodes)]

    def add_event(
        self,
        kind: str,
        at: float,
        run_id: int | None = None,
        node_id: int | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        kind, text = check_event(kind, data)
        with self._locked():
            event_id = next(self._event_ids)
            row = EventRow(event_id, float(at), kind, run_id, node_id, {}).as_dict()
            self._events.append({**row, "data": text})
            return event_id

    def events(
        self, since_id: int = 0, run_id: int | None = None, limit: int = 1000
    ) -> list[EventRow]:
        check_page(limit)
        with self._locked():
            rows = (
                e
                for e in self._events
                if e["id"] > since_id and (run_id is None or e["run_id"] == run_id)
            )
            return [
                EventRow(**{**e, "data": loads_object(e["data"])})
                for e in itertools.islice(rows, limit)
            ]

    def mark_interrupted(self, at: float) -> list[int]:
        with self._locked():
            ids = sorted(i for i, r in self._runs.items() if r["status"] == "running")
            for i in ids:
                self._runs[i].update(status="interrupted", ended_at=float(at))
            return ids

    def mark_nodes_offline(self, at: float) -> list[int]:
        with self._locked():
            ids = sorted(i for i, n in self._nodes.items() if n["online"])
            for i in ids:
                self._nodes[i].update(online=False, last_seen=float(at))
            return ids

    def batch(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def reader(self) -> StoreReader:
        return _InMemoryReader(self)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _node(self, node_id: int) -> dict[str, Any]:
        node = self._nodes.get(node_id)
        if node is None:
            raise UnknownNodeError(f"node {node_id} is not in the link store")
        return node


class _InMemoryReader:
    """The read methods of an InMemoryStore; closing it leaves the store open."""

    def __init__(self, store: InMemoryStore) -> None:
        self._store: InMemoryStore | None = store

    def _s(self) -> InMemoryStore:
        if self._store is None:
            raise ClosedError("the link store reader is closed")
        return self._store

    def get_run(self, run_id: int) -> RunRow | None:
        return self._s().get_run(run_id)

    def list_runs(self, limit: int = 100, offset: int = 0) -> list[RunRow]:
        return self._s().list_runs(limit, offset)

    def list_rounds(self, run_id: int) -> list[RoundRow]:
        return self._s().list_rounds(run_id)

    def list_nodes(self) -> list[NodeRow]:
        return self._s().list_nodes()

    def events(
        self, since_id: int = 0, run_id: int | None = None, limit: int = 1000
    ) -> list[EventRow]:
        return self._s().events(since_id, run_id, limit)

    def close(self) -> None:
        self._store = None
