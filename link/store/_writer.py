"""Writes to the link store from one background thread, so the IO thread never waits on disk.

The IO thread calls the typed methods of :class:`StoreWriter`; each validates its
arguments at once (a caller's bug raises at the call site), copies what it was
given, and queues the write. The writer thread applies queued writes in batches:
everything queued by the time it looks is one transaction, committed when the
queue drains, so a burst of events costs one fsync-free WAL commit, not one each.

Nothing queued is dropped for a failing disk: a commit that fails (the disk is
full, the database is locked, :class:`~._protocol.StoreError`) is rolled back and
the same batch retried with back-off until it commits. Meanwhile
:attr:`StoreWriter.degraded` says why (the link reports it: health, systemd
STATUS, a log line a minute) and the queue is bounded: past ``max_pending``
queued writes, a caller waits for room (back-pressure), it never grows memory
without end. Only a write that is wrong in itself (the run does not exist, a
value that is not JSON) is logged, counted in :attr:`StoreWriter.failed` and
skipped: retrying it cannot help.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Unpack

import structlog

from fedzero.core import ClosedError, FedzeroTimeoutError

from ._faults import injected_faults
from ._protocol import (
    LinkStore,
    RoundStats,
    StoreError,
    StoreReader,
    check_kind,
    check_run_fields,
    check_status,
)

log = structlog.get_logger(__name__)

_MAX_BATCH: Final = 1000
_BACKLOG_WARNING: Final = 10_000
MAX_PENDING: Final = 100_000
"""Queued writes beyond which a caller waits for the writer (back-pressure)."""
_RETRY_FIRST: Final = 0.05  # seconds before the first retry of a failed commit
_RETRY_MAX: Final = 2.0  # longest wait between retries
_DEGRADED_LOG_SECS: Final = 60.0  # a store_degraded line this often while it lasts

_Write = Callable[[LinkStore], object]


class StoreWriter:
    """The single thread that writes to a :class:`~._protocol.LinkStore`; takes ownership of it.

    Call the write methods from any thread (they never block on disk);
    :meth:`flush` waits until everything queued so far is committed; :meth:`close`
    flushes, stops the thread and closes the store.

    Args:
        store: the store to write to; do not call its write methods elsewhere.
        name: the thread's name.
        max_pending: queued writes beyond which callers wait (back-pressure).
    """

    def __init__(
        self,
        store: LinkStore,
        *,
        name: str = "fedzero-store-writer",
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._store = store
        self._queue: queue.SimpleQueue[tuple[int, str, _Write] | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._submitted = 0  # sequence number of the last queued write
        self._done = 0  # sequence number of the last write committed (or failed)
        self._failed = 0
        self._closed = False
        self._warned_backlog = False
        self._max_pending = max_pending
        self._degraded = ""
        self._fail_while = injected_faults().get("store_fail_while", "")  # tests only
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- properties

    @property
    def store(self) -> LinkStore:
        """The store written to (use :meth:`reader` to read from another thread)."""
        return self._store

    @property
    def pending(self) -> int:
        """Writes queued and not yet committed."""
        with self._cond:
            return self._submitted - self._done

    @property
    def failed(self) -> int:
        """Writes that raised in the writer thread since start (each was logged)."""
        with self._cond:
            return self._failed

    @property
    def degraded(self) -> str:
        """Why commits fail right now ("" when the store writes)."""
        with self._cond:
            return self._degraded

    @property
    def alive(self) -> bool:
        """Whether the writer thread runs (False once closed, or if it died)."""
        return self._thread.is_alive()

    def reader(self) -> StoreReader:
        """Return a reader of the store for another thread (see :meth:`LinkStore.reader`)."""
        return self._store.reader()

    def next_run_id(self) -> int:
        """Reserve a new run id (never touches disk)."""
        return self._store.next_run_id()

    # ------------------------------------------------------------------ writes

    def create_run(
        self, run_id: int, run_config: Mapping[str, Any], app: str, started_at: float
    ) -> None:
        """Queue :meth:`LinkStore.create_run`."""
        config = dict(run_config)
        self._submit("create_run", lambda s: s.create_run(run_id, config, app, started_at))

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Queue :meth:`LinkStore.update_run`; unknown field names raise ValueError here."""
        check_run_fields(fields)
        values = {k: list(v) if k == "nodes" else v for k, v in fields.items()}
        if "run_config" in values:
            values["run_config"] = dict(values["run_config"])
        self._submit("update_run", lambda s: s.update_run(run_id, **values))

    def end_run(
        self, run_id: int, status: str, at: float, *, error: str = "", traceback: str = ""
    ) -> None:
        """Queue the end of a run: its status, ``ended_at``, and error if it failed."""
        check_status(status)
        self.update_run(run_id, status=status, ended_at=at, error=error, traceback=traceback)

    def upsert_round(
        self,
        run_id: int,
        round: int,
        metrics: Mapping[str, Any],
        at: float,
        *,
        counters: Mapping[str, Any] | None = None,
        **stats: Unpack[RoundStats],
    ) -> None:
        """Queue :meth:`LinkStore.upsert_round`.

        With ``counters`` (run fields such as ``replies``), the run's row gets them in
        the same commit as the round and its ``rounds_done``.
        """
        values, fields = dict(metrics), dict(counters or {})
        check_run_fields(fields)
        if stats.get("nodes") is not None:
            stats["nodes"] = list(stats["nodes"] or ())

        def write(store: LinkStore) -> None:
            store.upsert_round(run_id, round, values, at, **stats)
            if fields:
                store.update_run(run_id, **fields)

        self._submit("upsert_round", write)

    def upsert_node(
        self,
        node_id: int,
        public_key: str | None,
        node_config: Mapping[str, Any],
        seen_at: float,
        online: bool = True,
    ) -> None:
        """Queue :meth:`LinkStore.upsert_node`."""
        config = dict(node_config)
        self._submit(
            "upsert_node", lambda s: s.upsert_node(node_id, public_key, config, seen_at, online)
        )

    def set_node_online(self, node_id: int, online: bool, at: float) -> None:
        """Queue :meth:`LinkStore.set_node_online`."""
        self._submit("set_node_online", lambda s: s.set_node_online(node_id, online, at))

    def update_node_traffic(
        self, node_id: int, bytes_in: int, bytes_out: int, seen_at: float
    ) -> None:
        """Queue :meth:`LinkStore.update_node_traffic`."""
        self._submit(
            "update_node_traffic",
            lambda s: s.update_node_traffic(node_id, bytes_in, bytes_out, seen_at),
        )

    def add_event(
        self,
        kind: str,
        at: float,
        run_id: int | None = None,
        node_id: int | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue :meth:`LinkStore.add_event` (its id is known to readers once committed)."""
        check_kind(kind)
        values = dict(data or {})
        self._submit("add_event", lambda s: s.add_event(kind, at, run_id, node_id, values))

    # --------------------------------------------------------------- lifecycle

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write queued before this call is committed (or failed).

        Raises:
            FedzeroTimeoutError: not done within ``timeout`` seconds.
        """
        with self._cond:
            target = self._submitted
            if not self._cond.wait_for(lambda: self._done >= target, timeout):
                raise FedzeroTimeoutError(
                    f"link store writer: {target - self._done} writes still pending "
                    f"after {timeout} s"
                )

    @property
    def submitted(self) -> int:
        """Sequence number of the last write queued."""
        return self._submitted

    @property
    def committed(self) -> int:
        """Sequence number of the last write committed (or failed and logged)."""
        return self._done

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is queued, stop the thread and close the store. Idempotent.

        Raises:
            FedzeroTimeoutError: the thread did not finish within ``timeout``
                seconds (the store is left open: the thread may still use it).
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise FedzeroTimeoutError(
                f"link store writer: {self.pending} writes still pending after {timeout} s"
            )
        self._store.close()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _submit(self, name: str, write: _Write) -> None:
        with self._cond:
            if self._closed:
                raise ClosedError("link store writer is closed")
            if self._submitted - self._done >= self._max_pending:  # back-pressure
                log.warning("store_writer_full", pending=self._submitted - self._done)
                self._cond.wait_for(self._has_room)
            self._submitted += 1
            seq = self._submitted
            backlog = seq - self._done
        self._queue.put((seq, name, write))
        if backlog >= _BACKLOG_WARNING and not self._warned_backlog:
            self._warned_backlog = True
            log.warning("store_writer_backlog", pending=backlog)

    def _has_room(self) -> bool:
        return self._submitted - self._done < self._max_pending or not self._thread.is_alive()

    def _main(self) -> None:
        try:
            self._loop()
        except BaseException:
            log.critical("store_writer_died", pending=self.pending, exc_info=True)
            raise
        finally:
            with self._cond:
                self._cond.notify_all()  # nobody waits for room a dead thread cannot make

    def _loop(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < _MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._apply(batch)

    def _apply(self, batch: list[tuple[int, str, _Write]]) -> None:
        """Commit ``batch``; a failed commit is retried with back-off until it succeeds."""
        delay, since, logged = _RETRY_FIRST, time.monotonic(), 0.0
        while True:
            started = time.perf_counter()
            try:
                failed = self._commit(batch)
            except Exception as exc:  # nothing of the batch is stored: try it again
                now = time.monotonic()
                self._set_degraded(f"{type(exc).__name__}: {exc}")
                if now - logged >= _DEGRADED_LOG_SECS:
                    logged = now
                    log.error(
                        "store_degraded",
                        error=self.degraded,
                        pending=self.pending,
                        secs=round(now - since, 1),
                        hint="commits are retried; the link refuses new runs until they work",
                    )
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                continue
            break
        if logged:
            log.warning(
                "store_recovered", pending=self.pending, secs=round(time.monotonic() - since, 1)
            )
        log.debug(
            "store_batch_committed",
            writes=len(batch),
            failed=failed,
            ms=round((time.perf_counter() - started) * 1e3, 2),
        )
        with self._cond:
            self._degraded = ""
            self._done = batch[-1][0]
            self._failed += failed
            if self._submitted - self._done < _BACKLOG_WARNING // 2:
                self._warned_backlog = False
            self._cond.notify_all()

    def _commit(self, batch: list[tuple[int, str, _Write]]) -> int:
        """Apply ``batch`` in one transaction; return how many writes were wrong in themselves.

        Raises:
            StoreError: the store could not write (the transaction is rolled back).
        """
        failed = 0
        with self._store.batch():
            if self._fail_while and os.path.exists(self._fail_while):
                raise StoreError(f"injected test fault: commits fail while {self._fail_while}")
            for _, name, write in batch:
                try:
                    write(self._store)
                except StoreError as exc:
                    if isinstance(exc.__cause__, sqlite3.OperationalError):
                        raise  # the disk, not the write: the whole batch is tried again
                    failed += 1
                    log.error("store_write_failed", write=name, error=str(exc))
                except Exception as exc:
                    failed += 1
                    error = f"{type(exc).__name__}: {exc}"
                    log.error("store_write_failed", write=name, error=error)
        return failed

    def _set_degraded(self, reason: str) -> None:
        with self._cond:
            self._degraded = reason
