"""The link's state in SQLite (stdlib ``sqlite3``): WAL, ``synchronous=NORMAL``, foreign keys.

Durability: a committed transaction survives the process being killed (SIGKILL,
OOM): it is in the WAL file, and the next open replays it. With
``synchronous=NORMAL`` the last commits before a power loss or kernel crash may
be rolled back, never corrupted; that is the trade SQLite recommends for WAL.

One :class:`SqliteStore` per database file (a lock file next to it makes a
second link on the same state directory fail fast). It serializes its own calls
with a lock; its readers (:meth:`SqliteStore.reader`) have their own
connections and, thanks to WAL, read committed data while a write is going on.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Final, Unpack

import structlog

from fedzero.core import ClosedError, UnknownNodeError, UnknownRunError

from ._protocol import (
    EventRow,
    NodeRow,
    RoundRow,
    RoundStats,
    RunIds,
    RunRow,
    StoreError,
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
from ._schema import connect, lock_file, prepare

log = structlog.get_logger(__name__)

_RUN_COLUMNS: Final = (
    "run_id, status, run_config, app, started_at, ended_at, error, traceback, rounds_done, "
    "nodes, messages_sent, replies, failures, bytes_in, bytes_out"
)
_NODE_COLUMNS: Final = (
    "node_id, public_key, node_config, first_seen, last_seen, online, bytes_in, bytes_out"
)


class _Reads:
    """The read queries, on a connection guarded by a lock (shared by store and reader)."""

    _conn: sqlite3.Connection | None
    _lock: threading.RLock
    _path: Path

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise ClosedError(f"link store {self._path} is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise StoreError(f"link store {self._path}: {exc}") from exc

    def get_run(self, run_id: int) -> RunRow | None:
        """Return run ``run_id``, or None if there is no such run."""
        with self._read() as conn:
            sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?"  # noqa: S608 (constant)
            row = conn.execute(sql, (run_id,)).fetchone()
            return None if row is None else run_row_from(row)

    def list_runs(self, limit: int = 100, offset: int = 0) -> list[RunRow]:
        """Return up to ``limit`` runs, newest (highest id) first, skipping ``offset``."""
        check_page(limit, offset)
        with self._read() as conn:
            sql = f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY run_id DESC LIMIT ? OFFSET ?"  # noqa: S608
            rows = conn.execute(sql, (limit, offset)).fetchall()
            return [run_row_from(r) for r in rows]

    def list_rounds(self, run_id: int) -> list[RoundRow]:
        """Return the rounds of ``run_id`` in round order (empty if none)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT run_id, round, metrics, at, round_secs, replies, failures FROM rounds "
                "WHERE run_id = ? ORDER BY round",
                (run_id,),
            ).fetchall()
            return [RoundRow(**{**dict(r), "metrics": loads_object(r["metrics"])}) for r in rows]

    def list_nodes(self) -> list[NodeRow]:
        """Return every node ever registered, by node id."""
        with self._read() as conn:
            sql = f"SELECT {_NODE_COLUMNS} FROM nodes ORDER BY node_id"  # noqa: S608 (constant)
            rows = conn.execute(sql).fetchall()
            return [node_row_from(r) for r in rows]

    def events(
        self, since_id: int = 0, run_id: int | None = None, limit: int = 1000
    ) -> list[EventRow]:
        """Return up to ``limit`` events with id > ``since_id`` in id order, of one run or all."""
        check_page(limit)
        with self._read() as conn:
            sql = "SELECT id, at, kind, run_id, node_id, data FROM events WHERE id > ?"
            args: tuple[Any, ...] = (since_id,)
            if run_id is not None:
                sql, args = sql + " AND run_id = ?", (*args, run_id)
            rows = conn.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
            return [EventRow(**{**dict(r), "data": loads_object(r["data"])}) for r in rows]


class SqliteReader(_Reads):
    """A read-only view of a :class:`SqliteStore` on its own connection.

    Safe to share between threads (calls are serialized); it sees every
    transaction committed before each call. Close it when done.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.RLock()
        try:
            self._conn = connect(path)
            self._conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open link store {path} for reading: {exc}") from exc

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class SqliteStore(_Reads):
    """A :class:`~._protocol.LinkStore` in one SQLite file, created (and migrated) on open.

    Args:
        path: the database file, e.g. ``<state_dir>/link.db``; its folder is created.

    Raises:
        StoreError: the file is not a fedzero state database, its schema is newer
            than this fedzero, another process holds it open, or SQLite failed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = None
        self._lock_fd: int | None = None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_file(self._path)
        try:
            self._conn = connect(self._path)
            prepare(self._conn, self._path)
            row = self._conn.execute("SELECT max(run_id) FROM runs").fetchone()
        except BaseException as exc:
            self.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open link store {self._path}: {exc}") from exc
            raise
        self._ids = RunIds((row[0] or 0) + 1)
        log.info("link_store_opened", path=str(self._path), next_run_id=(row[0] or 0) + 1)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction, or a savepoint inside an enclosing one (see :meth:`batch`)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise ClosedError(f"link store {self._path} is closed")
            savepoint = f"s{self._depth}"
            try:
                conn.execute("SAVEPOINT " + savepoint if self._depth else "BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"link store {self._path}: {exc}") from exc
            self._depth += 1
            try:
                yield conn
            except BaseException as exc:
                self._depth -= 1
                if self._depth:
                    conn.execute(f"ROLLBACK TO {savepoint}")
                    conn.execute(f"RELEASE {savepoint}")
                elif conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"link store {self._path}: {exc}") from exc
                raise
            self._depth -= 1
            try:
                conn.execute(f"RELEASE {savepoint}" if self._depth else "COMMIT")
            except sqlite3.Error as exc:
                if not self._depth and conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"link store {self._path}: commit failed: {exc}") from exc

    def batch(self) -> AbstractContextManager[None]:
        """Group the calls made inside into one commit; a call that raises is undone alone."""
        return _as_none(self._tx())

    def reader(self) -> SqliteReader:
        """Return a new reader on its own connection (see :class:`SqliteReader`)."""
        with self._lock:
            if self._conn is None:
                raise ClosedError(f"link store {self._path} is closed")
        return SqliteReader(self._path)

    def next_run_id(self) -> int:
        """Reserve and return a new run id, higher than any stored. Never touches disk."""
        return self._ids.take()

    def create_run(
        self, run_id: int, run_config: Mapping[str, Any], app: str, started_at: float
    ) -> None:
        """Store a new ``running`` run. Raises ValueError if ``run_id`` exists."""
        config = dumps(dict(run_config), "run_config")
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise ValueError(f"run {run_id} already exists")
            tx.execute(
                "INSERT INTO runs (run_id, status, run_config, app, started_at) "
                "VALUES (?, 'running', ?, ?, ?)",
                (run_id, config, str(app), float(started_at)),
            )
        self._ids.seen(run_id)

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Set fields (names in :data:`~._protocol.RUN_FIELDS`) of a run. Raises UnknownRunError."""
        values = check_run_fields(fields)
        # Column names come from the RUN_FIELDS allow-list, never from input.
        assignments = ", ".join(f"{k} = ?" for k in values) or "run_id = run_id"
        sql = f"UPDATE runs SET {assignments} WHERE run_id = ?"  # noqa: S608
        with self._tx() as tx:
            if tx.execute(sql, (*values.values(), run_id)).rowcount == 0:
                raise UnknownRunError(f"run {run_id} is not in the link store")

    def upsert_round(
        self,
        run_id: int,
        round: int,
        metrics: Mapping[str, Any],
        at: float,
        **stats: Unpack[RoundStats],
    ) -> None:
        """Add or update a round; metrics are merged key by key, None keeps a value."""
        new = dumps(dict(metrics), "metrics")
        with self._tx() as tx:
            if not tx.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise UnknownRunError(f"run {run_id} is not in the link store")
            old = tx.execute(
                "SELECT metrics, round_secs, replies, failures FROM rounds "
                "WHERE run_id = ? AND round = ?",
                (run_id, round),
            ).fetchone()
            columns = merge_round(old, new, stats)
            row = {"run_id": run_id, "round": round, "at": float(at), **columns}
            tx.execute(
                "INSERT INTO rounds (run_id, round, metrics, at, round_secs, replies, failures) "
                "VALUES (:run_id, :round, :metrics, :at, :round_secs, :replies, :failures) "
                "ON CONFLICT (run_id, round) DO UPDATE SET "
                "metrics = excluded.metrics, at = excluded.at, round_secs = excluded.round_secs, "
                "replies = excluded.replies, failures = excluded.failures",
                row,
            )
            tx.execute(  # in the same transaction: rounds_done agrees with the rounds table
                "UPDATE runs SET rounds_done = max(rounds_done, ?) WHERE run_id = ?",
                (round, run_id),
            )
            stored = tx.execute("SELECT nodes FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            nodes = merged_nodes(stored[0], stats)
            if nodes is not None:
                tx.execute("UPDATE runs SET nodes = ? WHERE run_id = ?", (nodes, run_id))

    def upsert_node(
        self,
        node_id: int,
        public_key: str | None,
        node_config: Mapping[str, Any],
        seen_at: float,
        online: bool = True,
    ) -> None:
        """Register a node or refresh it (first_seen is kept)."""
        config = dumps(dict(node_config), "node_config")
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO nodes "
                "(node_id, public_key, node_config, first_seen, last_seen, online) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET "
                "public_key = excluded.public_key, node_config = excluded.node_config, "
                "last_seen = excluded.last_seen, online = excluded.online",
                (node_id, public_key, config, float(seen_at), float(seen_at), bool(online)),
            )

    def set_node_online(self, node_id: int, online: bool, at: float) -> None:
        """Record that a node came online or went offline at ``at``. Raises UnknownNodeError."""
        self._update_node(node_id, "online = ?, last_seen = ?", (bool(online), float(at)))

    def update_node_traffic(
        self, node_id: int, bytes_in: int, bytes_out: int, seen_at: float
    ) -> None:
        """Set a node's byte totals and last_seen. Raises UnknownNodeError."""
        self._update_node(
            node_id,
            "bytes_in = ?, bytes_out = ?, last_seen = ?",
            (int(bytes_in), int(bytes_out), float(seen_at)),
        )

    def _update_node(self, node_id: int, assignments: str, args: tuple[Any, ...]) -> None:
        with self._tx() as tx:
            sql = f"UPDATE nodes SET {assignments} WHERE node_id = ?"  # noqa: S608 (constants)
            if tx.execute(sql, (*args, node_id)).rowcount == 0:
                raise UnknownNodeError(f"node {node_id} is not in the link store")

    def add_event(
        self,
        kind: str,
        at: float,
        run_id: int | None = None,
        node_id: int | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Append an event; return its id."""
        kind, text = check_event(kind, data)
        with self._tx() as tx:
            cur = tx.execute(
                "INSERT INTO events (at, kind, run_id, node_id, data) VALUES (?, ?, ?, ?, ?)",
                (float(at), kind, run_id, node_id, text),
            )
            return int(cur.lastrowid or 0)

    def mark_interrupted(self, at: float) -> list[int]:
        """Turn every ``running`` run into ``interrupted`` (ended at ``at``); return their ids."""
        with self._tx() as tx:
            rows = tx.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = ? WHERE status = 'running' "
                "RETURNING run_id",
                (float(at),),
            ).fetchall()
        return sorted(r[0] for r in rows)

    def mark_nodes_offline(self, at: float) -> list[int]:
        """Record every online node as offline at ``at``; return their ids."""
        with self._tx() as tx:
            rows = tx.execute(
                "UPDATE nodes SET online = 0, last_seen = ? WHERE online RETURNING node_id",
                (float(at),),
            ).fetchall()
        return sorted(r[0] for r in rows)

    def close(self) -> None:
        """Checkpoint the WAL into the database file and close. Idempotent."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA optimize")
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None


@contextlib.contextmanager
def _as_none(cm: AbstractContextManager[Any]) -> Iterator[None]:
    with cm:
        yield
