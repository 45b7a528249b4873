"""The link's persistent state behind one small Protocol: rows, validation, shared helpers.

:class:`LinkStore` is what the link needs from storage: runs, per-round metrics,
the node registry and an append-only event log. ``_memory.InMemoryStore``
keeps it in dicts (tests, a link without a state directory);
``_sqlite.SqliteStore`` keeps it in SQLite. Both pass the same
conformance tests (``tests/link/test_store.py``). Dicts are stored as JSON
text in both (ASCII only, so a lone surrogate cannot break a write), so a value
that round-trips through one round-trips through the other.

Threading: every implementation is safe to call from several threads, but its
methods may block on disk. The link's IO thread never calls them directly: it
queues writes on a :class:`~._writer.StoreWriter` and reads through
:meth:`LinkStore.reader` from another thread. :meth:`LinkStore.next_run_id` is
the exception: it never touches disk.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Final, Protocol, TypedDict, Unpack

from fedzero.core import FedzeroError

RUN_STATUSES: Final = frozenset({"running", "finished", "failed", "stopped", "interrupted"})
"""Every value of ``RunRow.status``; ``interrupted`` means the link died while it ran."""

_COUNTERS: Final = ("rounds_done", "messages_sent", "replies", "failures", "bytes_in", "bytes_out")

RUN_FIELDS: Final = frozenset(
    {"status", "run_config", "app", "ended_at", "error", "traceback", "nodes", *_COUNTERS}
)
"""Fields :meth:`LinkStore.update_run` accepts."""
_MAX_KIND_LEN: Final = 64


class StoreError(FedzeroError):
    """The state database failed: unreadable, locked by another link, or too new."""


# ---------------------------------------------------------------------- rows


@dataclasses.dataclass(frozen=True, slots=True)
class RunRow:
    """One run as stored. Dict and list fields are fresh copies: mutating them changes nothing."""

    run_id: int
    status: str
    run_config: dict[str, Any]
    app: str
    started_at: float
    ended_at: float | None = None
    error: str = ""
    traceback: str = ""
    rounds_done: int = 0
    nodes: list[int] = dataclasses.field(default_factory=list)
    messages_sent: int = 0
    replies: int = 0
    failures: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the row as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class RoundRow:
    """The metrics the ServerApp reported for one round of one run."""

    run_id: int
    round: int
    metrics: dict[str, Any]
    at: float
    round_secs: float | None = None
    replies: int = 0
    failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the row as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class NodeRow:
    """One node of the registry; ``online`` is as last recorded."""

    node_id: int
    public_key: str | None
    node_config: dict[str, Any]
    first_seen: float
    last_seen: float
    online: bool
    bytes_in: int = 0
    bytes_out: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the row as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class EventRow:
    """One entry of the event log; ids increase and are never reused."""

    id: int
    at: float
    kind: str
    run_id: int | None
    node_id: int | None
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """Return the row as a JSON-ready dict."""
        return dataclasses.asdict(self)


class RoundStats(TypedDict, total=False):
    """What the link measured of an aggregated round (keywords of ``upsert_round``).

    A stat left out or None keeps its stored value (None, 0, 0 for a new round).
    """

    round_secs: float | None
    replies: int | None
    failures: int | None
    nodes: list[int] | None
    """Nodes that took part: added to the run's ``nodes`` in the same commit."""


# ------------------------------------------------------------------ protocol


class StoreReader(Protocol):
    """The read side of the link's state (what the HTTP and control threads need)."""

    def get_run(self, run_id: int) -> RunRow | None:
        """Return run ``run_id``, or None if there is no such run."""

    def list_runs(self, limit: int = 100, offset: int = 0) -> list[RunRow]:
        """Return up to ``limit`` runs, newest (highest id) first, skipping ``offset``."""

    def list_rounds(self, run_id: int) -> list[RoundRow]:
        """Return the rounds of ``run_id`` in round order (empty if none)."""

    def list_nodes(self) -> list[NodeRow]:
        """Return every node ever registered, by node id."""

    def events(
        self, since_id: int = 0, run_id: int | None = None, limit: int = 1000
    ) -> list[EventRow]:
        """Return up to ``limit`` events with id > ``since_id`` in id order, of one run or all."""

    def close(self) -> None:
        """Release the resources; later calls raise ClosedError. Idempotent."""


class LinkStore(StoreReader, Protocol):
    """The link's persistent state: runs, rounds, nodes and events."""

    def next_run_id(self) -> int:
        """Reserve and return a new run id, higher than any stored. Never touches disk."""

    def create_run(
        self, run_id: int, run_config: Mapping[str, Any], app: str, started_at: float
    ) -> None:
        """Store a new ``running`` run. Raises ValueError if ``run_id`` exists."""

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Set fields (names in :data:`RUN_FIELDS`) of a run. Raises UnknownRunError."""

    def upsert_round(
        self,
        run_id: int,
        round: int,
        metrics: Mapping[str, Any],
        at: float,
        **stats: Unpack[RoundStats],
    ) -> None:
        """Add or update a round; metrics are merged key by key, None keeps a value.

        The run's ``rounds_done`` becomes at least ``round``, in the same commit:
        whatever a crash cuts short, it agrees with the rounds table.
        """

    def upsert_node(
        self,
        node_id: int,
        public_key: str | None,
        node_config: Mapping[str, Any],
        seen_at: float,
        online: bool = True,
    ) -> None:
        """Register a node or refresh it (first_seen is kept)."""

    def set_node_online(self, node_id: int, online: bool, at: float) -> None:
        """Record that a node came online or went offline at ``at``. Raises UnknownNodeError."""

    def update_node_traffic(
        self, node_id: int, bytes_in: int, bytes_out: int, seen_at: float
    ) -> None:
        """Set a node's byte totals and last_seen. Raises UnknownNodeError."""

    def add_event(
        self,
        kind: str,
        at: float,
        run_id: int | None = None,
        node_id: int | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Append an event; return its id."""

    def mark_interrupted(self, at: float) -> list[int]:
        """Turn every ``running`` run into ``interrupted`` (ended at ``at``); return their ids."""

    def mark_nodes_offline(self, at: float) -> list[int]:
        """Record every online node as offline at ``at``; return their ids."""

    def batch(self) -> AbstractContextManager[None]:
        """Group the calls made inside into one commit; a call that raises is undone alone."""

    def reader(self) -> StoreReader:
        """Return a reader usable from any thread while writes go on; close it when done."""


# ---------------------------------------------------------------- validation


def dumps(value: Any, what: str) -> str:
    """Encode ``value`` as JSON text for a column; TypeError names the field."""
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: not JSON-serializable ({exc})") from None


def loads_object(text: str) -> dict[str, Any]:
    """Decode a JSON object column written by :func:`dumps`."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise StoreError(f"expected a JSON object in the database, got {type(value).__name__}")
    return value


def check_run_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``update_run`` fields; return them with JSON columns encoded as text.

    Raises:
        ValueError: an unknown field name or status, or a negative counter.
        TypeError: a value of the wrong type.
    """
    unknown = set(fields) - RUN_FIELDS
    if unknown:
        raise ValueError(
            f"update_run: unknown field(s) {sorted(unknown)}; allowed: {sorted(RUN_FIELDS)}"
        )
    out = dict(fields)
    if "status" in out:
        out["status"] = check_status(out["status"])
    for name in _COUNTERS:
        if name in out:
            value = out[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"update_run: {name} must be an int >= 0, got {value!r}")
    for name in ("app", "error", "traceback"):
        if name in out and not isinstance(out[name], str):
            raise TypeError(f"update_run: {name} must be a str, got {type(out[name]).__name__}")
    if "error" in out:  # one line, by contract: the first line of the message
        out["error"] = out["error"].strip().split("\n", 1)[0]
    if "ended_at" in out and out["ended_at"] is not None:
        out["ended_at"] = float(out["ended_at"])
    if "run_config" in out:
        out["run_config"] = dumps(dict(out["run_config"]), "run_config")
    if "nodes" in out:
        out["nodes"] = dumps(sorted({int(n) for n in out["nodes"]}), "nodes")
    return out


def merge_round(old: Mapping[str, Any] | None, metrics: str, stats: RoundStats) -> dict[str, Any]:
    """A round's stored columns after an upsert over ``old`` (its stored columns, or None).

    ``metrics`` (JSON text from :func:`dumps`) is merged into the stored metrics
    key by key; a stat that is None keeps its stored value.
    """
    merged = {**loads_object(old["metrics"]), **loads_object(metrics)} if old else None
    out: dict[str, Any] = {"metrics": metrics if merged is None else dumps(merged, "metrics")}
    for name, default in (("round_secs", None), ("replies", 0), ("failures", 0)):
        value = stats.get(name)
        out[name] = value if value is not None else (old[name] if old else default)
    return out


def merged_nodes(stored: str, stats: RoundStats) -> str | None:
    """The run's ``nodes`` column with the round's nodes added (None: nothing to add)."""
    extra = stats.get("nodes")
    if not extra:
        return None
    return dumps(sorted({*json.loads(stored), *(int(n) for n in extra)}), "nodes")


def check_status(status: object) -> str:
    """Return ``status`` as a plain str if it is one of :data:`RUN_STATUSES`."""
    if not isinstance(status, str) or str(status) not in RUN_STATUSES:
        raise ValueError(f"run status must be one of {sorted(RUN_STATUSES)}, got {status!r}")
    return str(status)


def check_kind(kind: object) -> str:
    """Return an event kind if it is a non-empty snake_case str of at most 64 chars."""
    if (
        not isinstance(kind, str)
        or not 0 < len(kind) <= _MAX_KIND_LEN
        or not kind.replace("_", "").isalnum()
        or not kind.isascii()
    ):
        raise ValueError(f"event kind must be snake_case ascii of 1..64 chars, got {kind!r:.80}")
    return str(kind)


def check_event(kind: object, data: Mapping[str, Any] | None) -> tuple[str, str]:
    """Validate an event: return its kind and its data as JSON text (see :func:`check_kind`)."""
    text = dumps(dict(data or {}), "data")
    return check_kind(kind), text


def check_page(limit: int, offset: int = 0) -> None:
    """Raise ValueError unless ``limit`` >= 0 and ``offset`` >= 0."""
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got limit={limit}, offset={offset}")


class RunIds:
    """A thread-safe, non-blocking run id counter (shared by the implementations)."""

    def __init__(self, start: int) -> None:
        self._lock = threading.Lock()
        self._next = max(start, 1)

    def take(self) -> int:
        """Return a fresh id."""
        with self._lock:
            value, self._next = self._next, self._next + 1
            return value

    def seen(self, run_id: int) -> None:
        """Make sure later ids are higher than ``run_id``."""
        with self._lock:
            self._next = max(self._next, run_id + 1)


def run_row_from(raw: Mapping[str, Any]) -> RunRow:
    """Build a RunRow from a column -> value mapping whose JSON columns are text."""
    nodes = json.loads(raw["nodes"])
    return RunRow(**{**raw, "run_config": loads_object(raw["run_config"]), "nodes": nodes})


def node_row_from(raw: Mapping[str, Any]) -> NodeRow:
    """Build a NodeRow from a column -> value mapping whose JSON columns are text."""
    return NodeRow(
        **{**raw, "node_config": loads_object(raw["node_config"]), "online": bool(raw["online"])}
    )
