"""Open the link's state at start-up, and close what a crash left open."""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from ._memory import InMemoryStore
from ._protocol import LinkStore
from ._sqlite import SqliteStore
from ._writer import StoreWriter

log = structlog.get_logger(__name__)


def open_store(state_dir: Path | None) -> StoreWriter:
    """Open the state (SQLite under ``state_dir``, else memory) behind a writer thread.

    Runs still ``running`` in it were cut short by the link's previous death:
    they are recorded as ``interrupted``; every node is recorded offline.

    Raises:
        StoreError: the database cannot be opened (locked by another link, too new, ...).
    """
    store: LinkStore
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(state_dir / "link.db")
    else:
        store = InMemoryStore()
    now = time.time()
    for run_id in store.mark_interrupted(now):
        store.add_event("run_ended", now, run_id=run_id, data={"status": "interrupted"})
        log.warning("run_interrupted", run_id=run_id, reason="the link stopped during the run")
    store.mark_nodes_offline(now)
    return StoreWriter(store)
