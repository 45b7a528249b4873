"""The SQLite schema of the link store, its migrations, and opening a database file.

Migrations are numbered: ``MIGRATIONS[i]`` takes a database from schema version
``i`` to ``i + 1`` in one transaction, recorded in the ``schema_version`` table.
To change the schema, append a migration; never edit a released one.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import Final

import structlog

from ._protocol import StoreError

log = structlog.get_logger(__name__)

APPLICATION_ID: Final = 0x667A6C6B  # "fzlk": marks a file as a fedzero link state database
BUSY_TIMEOUT_S: Final = 5.0

# MIGRATIONS[i] takes the schema from version i to i + 1. Append, never edit.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        f"PRAGMA application_id = {APPLICATION_ID}",
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "INSERT INTO schema_version (version) VALUES (0)",
        """CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY,
            status TEXT NOT NULL CHECK (status IN
                ('running', 'finished', 'failed', 'stopped', 'interrupted')),
            run_config TEXT NOT NULL DEFAULT '{}',
            app TEXT NOT NULL DEFAULT '',
            started_at REAL NOT NULL,
            ended_at REAL,
            error TEXT NOT NULL DEFAULT '',
            traceback TEXT NOT NULL DEFAULT '',
            rounds_done INTEGER NOT NULL DEFAULT 0,
            nodes TEXT NOT NULL DEFAULT '[]',
            messages_sent INTEGER NOT NULL DEFAULT 0,
            replies INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            bytes_in INTEGER NOT NULL DEFAULT 0,
            bytes_out INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX runs_by_status ON runs (status)",
        """CREATE TABLE rounds (
            run_id INTEGER NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            round INTEGER NOT NULL,
            metrics TEXT NOT NULL DEFAULT '{}',
            at REAL NOT NULL,
            round_secs REAL,
            replies INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, round)) WITHOUT ROWID""",
        """CREATE TABLE nodes (
            node_id INTEGER PRIMARY KEY,
            public_key TEXT,
            node_config TEXT NOT NULL DEFAULT '{}',
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            online INTEGER NOT NULL DEFAULT 0,
            bytes_in INTEGER NOT NULL DEFAULT 0,
            bytes_out INTEGER NOT NULL DEFAULT 0)""",
        # No foreign keys on events: the log is append-only and may name anything.
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            run_id INTEGER,
            node_id INTEGER,
            data TEXT NOT NULL DEFAULT '{}')""",
        "CREATE INDEX events_by_run ON events (run_id, id)",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The schema version this code writes; an older database is migrated on open."""


def connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit), usable from any thread."""
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    return conn


def prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Set the connection up (WAL, synchronous=NORMAL, foreign keys) and migrate the schema.

    Raises:
        StoreError: WAL is unavailable, the file is another application's database,
            or its schema is newer than :data:`SCHEMA_VERSION`.
        sqlite3.Error: SQLite failed (the caller translates it).
    """
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"link store {path}: cannot enable WAL (journal_mode={mode})")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    if app_id != APPLICATION_ID and (app_id != 0 or has_tables):
        raise StoreError(f"{path} is not a fedzero link state database")
    version = conn.execute("SELECT version FROM schema_version").fetchone()[0] if has_tables else 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"link store {path} has schema version {version}, newer than this "
            f"fedzero's {SCHEMA_VERSION}: upgrade fedzero or use another state directory"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target - 1]:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (target,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("link_store_migrated", path=str(path), schema_version=target)


def lock_file(path: Path) -> int:
    """Hold an exclusive flock on ``<path>.lock`` so one process at a time opens ``path``."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"link store {path} is in use by another process (lock {lock_path}); "
            "run one link per state directory"
        ) from None
    return fd
