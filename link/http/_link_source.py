"""LinkStatsSource: the statistics web server's view of a running link.

Reads the link's live run snapshot, node ids and counters, and, when the link
keeps state, its store (node details, timings of aggregated rounds). Every
method is safe to call from the HTTP server's threads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from fedzero.core import FedzeroError

from .._state import Run
from ..store import RunRow, StoreReader

_T = TypeVar("_T")


class LinkView(Protocol):
    """What :class:`LinkStatsSource` reads of a link (:class:`~fedzero.link.Link` has it)."""

    @property
    def stats(self) -> Counter[str]:
        """The link's event counters (written by its IO thread)."""

    @property
    def credit_high_water(self) -> int:
        """Most large uploads ever admitted at once."""

    @property
    def credit_in_flight(self) -> int:
        """Large uploads admitted right now."""

    def runs(self) -> list[Run]:
        """A snapshot of the runs (safe from any thread)."""

    def node_ids(self, online_only: bool = True) -> list[int]:
        """Ids of registered nodes (a snapshot, safe from any thread)."""

    def store_reader(self) -> StoreReader:
        """A reader of the link's state; raises a FedzeroError when there is none."""

    def health(self) -> HealthView:
        """Whether the link is whole (its threads, its store)."""


class HealthView(Protocol):
    """What a health report offers (:class:`~fedzero.link.Link.health` returns one)."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON of ``/api/health``."""


class LinkStatsSource:
    """A :class:`StatsSource` on a running :class:`~fedzero.link.Link`.

    Reads the link's live run snapshot (``Link.runs``), its node ids, its
    event counters, and, when the link keeps state, its store (node details and
    the timing of aggregated rounds).

    Args:
        link: the link to report on (started or not).
    """

    def __init__(self, link: LinkView) -> None:
        self._link = link
        self._started = time.time()
        self._lock = threading.Lock()
        self._reader: StoreReader | None = None

    def close(self) -> None:
        """Close the store reader, if one was opened."""
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def runs(self) -> list[dict[str, Any]]:
        """See :meth:`StatsSource.runs`: the runs the store holds, newest first.

        A run the store does not hold yet (its first write is queued) is not
        listed; a running run's counters are its live ones (the store has them
        within seconds), its status is the stored one.
        """
        rows = self._read(lambda s: s.list_runs(limit=10_000))
        live = {r.run_id: r for r in self._link.runs()}
        if rows is None:  # no store (yet): what the link has in memory
            return [self._run(r, None) for r in sorted(live.values(), key=lambda r: -r.run_id)]
        return [self._run(live.get(row.run_id), row) for row in rows]

    def run(self, run_id: int) -> dict[str, Any] | None:
        """See :meth:`StatsSource.run`."""
        row = self._read(lambda s: s.get_run(run_id))
        live = next((r for r in self._link.runs() if r.run_id == run_id), None)
        if row is None and live is None:
            return None
        config = row.run_config if row is not None else live.run_config if live else {}
        return {**self._run(live, row), "run_config": dict(config)}

    def rounds(self, run_id: int) -> list[dict[str, Any]]:
        """See :meth:`StatsSource.rounds`."""
        if not any(r.run_id == run_id for r in self._link.runs()):
            return []
        keys = ("round", "at", "metrics", "round_secs", "replies", "failures")
        rows = self._read(lambda s: [r.as_dict() for r in s.list_rounds(run_id)]) or []
        return [{k: row[k] for k in keys} for row in rows]

    def nodes(self) -> list[dict[str, Any]]:
        """See :meth:`StatsSource.nodes`."""
        online = set(self._link.node_ids(online_only=True))
        rows = {r.node_id: r.as_dict() for r in self._read(lambda s: s.list_nodes()) or []}
        out = []
        for node_id in sorted(set(self._link.node_ids(online_only=False)) | set(rows)):
            row = rows.get(node_id, {})
            out.append(
                {
                    "node_id": node_id,
                    "online": node_id in online,
                    "last_seen": row.get("last_seen"),
                    "node_config": row.get("node_config", {}),
                    "bytes_in": row.get("bytes_in", 0),
                    "bytes_out": row.get("bytes_out", 0),
                    "public_key": row.get("public_key"),
                }
            )
        return out

    def stats(self) -> dict[str, Any]:
        """See :meth:`StatsSource.stats`."""
        counters = dict.copy(self._link.stats)  # atomic: the IO thread counts
        runs = self._link.runs()
        by_status: dict[str, int] = {}
        for run in runs:
            by_status[str(run.status)] = by_status.get(str(run.status), 0) + 1
        nodes = self.nodes()
        return {
            "uptime_secs": time.time() - self._started,
            "messages": sum(r.messages_sent for r in runs),
            "replies": counters.get("replies", 0),
            "failures": _strip(counters, "failed_"),
            "replies_dropped": _strip(counters, "reply_dropped_"),
            "malformed": {
                "frames": counters.get("malformed", 0),
                "fleet": counters.get("fleet_malformed", 0),
                "app": counters.get("app_malformed", 0),
            },
            "bytes_in": sum(n["bytes_in"] for n in nodes),
            "bytes_out": sum(n["bytes_out"] for n in nodes),
            "credit_high_water": self._link.credit_high_water,
            "credit_in_flight": self._link.credit_in_flight,
            "aggregation_secs": counters.get("aggregation_us", 0) / 1e6,
            "runs_by_status": by_status,
            "nodes_online": sum(1 for n in nodes if n["online"]),
            "counters": counters,
            "health": self._link.health().as_dict(),
        }

    @staticmethod
    def _run(run: Run | None, row: RunRow | None) -> dict[str, Any]:
        """The stored run; a running one with its live counters (``row`` or ``run`` is set)."""
        if row is None:
            assert run is not None  # noqa: S101 - one of them is given
            return _counters(run, {"status": str(run.status), "app": "", "error": ""}, run)
        stored = {
            "run_id": row.run_id,
            "status": row.status,
            "app": row.app,
            "started_at": row.started_at,
            "ended_at": row.ended_at,
            "error": row.error,
        }
        live = run if run is not None and row.status == "running" else None
        return _counters(row, stored, live)

    def _read(self, query: Callable[[StoreReader], _T]) -> _T | None:
        """Run ``query(reader)`` on the link's store; None if the link keeps none (yet)."""
        with self._lock:
            try:
                if self._reader is None:
                    self._reader = self._link.store_reader()
                return query(self._reader)
            except FedzeroError:  # not running yet, or closed
                return None


def _counters(source: Run | RunRow, out: dict[str, Any], live: Run | None) -> dict[str, Any]:
    """``out`` with the counters of ``live`` if given, else of ``source``."""
    counted: Any = live if live is not None else source
    return {
        "run_id": source.run_id,
        **out,
        "started_at": out.get("started_at", source.started_at),
        "ended_at": out.get("ended_at", source.ended_at),
        "rounds_done": max(counted.rounds_done, source.rounds_done),
        "nodes": len(set(counted.nodes)),
        "messages": counted.messages_sent,
        "replies": counted.replies,
        "failures": counted.failures,
        "bytes_in": counted.bytes_in,
        "bytes_out": counted.bytes_out,
    }


def _strip(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in counters.items() if k.startswith(prefix)}
