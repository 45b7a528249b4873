"""What the statistics server reads: a small Protocol of JSON-ready snapshots."""

from __future__ import annotations

from typing import Any, Protocol


class StatsSource(Protocol):
    """What the statistics server reads. Every method is called from the server's threads.

    Implementations return fresh JSON-ready values (dicts, lists, str, numbers,
    None) that the caller may keep; they must be thread-safe and quick.
    """

    def runs(self) -> list[dict[str, Any]]:
        """Return every run, newest first.

        Each has ``run_id``, ``status``, ``app``, ``started_at``, ``ended_at``,
        ``rounds_done``, ``nodes`` (count), ``replies``, ``failures``, ``error``,
        ``bytes_in`` and ``bytes_out``.
        """

    def run(self, run_id: int) -> dict[str, Any] | None:
        """Return run ``run_id`` as in :meth:`runs` (plus ``run_config``), or None."""

    def rounds(self, run_id: int) -> list[dict[str, Any]]:
        """Return the rounds of ``run_id`` in round order (empty for an unknown run).

        Each has ``round``, ``at``, ``metrics`` ({name: number}), ``round_secs``
        (None if unknown), ``replies`` and ``failures``.
        """

    def nodes(self) -> list[dict[str, Any]]:
        """Return every known node, by node id.

        Each has ``node_id``, ``online``, ``last_seen`` (epoch seconds or None),
        ``node_config``, ``bytes_in``, ``bytes_out`` and ``public_key`` (or None).
        """

    def stats(self) -> dict[str, Any]:
        """Return the link's counters.

        Keys (missing ones read as 0): ``uptime_secs``, ``messages``, ``replies``,
        ``failures`` ({error code: n}), ``replies_dropped`` ({reason: n}),
        ``malformed`` ({endpoint: n}), ``bytes_in``, ``bytes_out``,
        ``aggregation_secs``, ``credit_in_flight``, ``runs_by_status`` ({status: n}),
        ``health`` (``{"status": "ok"|"degraded"|"unhealthy", "healthy": bool,
        "degraded": bool, "reasons": [str]}``; a source without it reads as ok).
        """
