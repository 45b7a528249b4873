"""Whether the link is whole: its threads alive, its store writing.

The link is **healthy** while every thread it needs runs (the IO loop, the fold
worker, the store writer, the exec service). A thread that died makes it
**unhealthy**: the IO loop stops pinging the systemd watchdog (so systemd
restarts the daemon), ``/api/health`` answers 503 and ``/metrics`` reports
``fedzero_link_healthy 0``. A store that cannot write makes it **degraded**: it
keeps serving the runs it has, refuses new ones, and says so (systemd STATUS,
``/api/health`` 503, ``fedzero_link_degraded 1``); a restart would not fix a
full disk, so the watchdog pings go on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import structlog

from fedzero.core.runtime import Notifier

log = structlog.get_logger(__name__)

Check = Callable[[], str]
"""A check: "" when fine, else the reason, in words."""


@dataclasses.dataclass(frozen=True, slots=True)
class HealthReport:
    """A snapshot of the link's health.

    Attributes:
        unhealthy: why the link cannot do its work (a thread died), empty if it can.
        degraded: why it serves only in part (its store cannot write), empty if not.
    """

    unhealthy: tuple[str, ...] = ()
    degraded: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        """No thread died (the watchdog pings go on)."""
        return not self.unhealthy

    @property
    def status(self) -> str:
        """``ok``, ``degraded`` or ``unhealthy``."""
        if self.unhealthy:
            return "unhealthy"
        return "degraded" if self.degraded else "ok"

    def as_dict(self) -> dict[str, Any]:
        """The JSON of ``/api/health``."""
        return {
            "status": self.status,
            "healthy": self.healthy,
            "degraded": bool(self.degraded),
            "reasons": [*self.unhealthy, *self.degraded],
        }

    def summary(self) -> str:
        """One line for systemd's STATUS and the log."""
        return "; ".join([*self.unhealthy, *self.degraded]) or "serving"


class Health:
    """The checks of one link; :meth:`report` runs them (from any thread).

    Args:
        threads: per thread, a check ("" while it runs, else why it is gone).
        degraded: checks of partial service (the store's write failures).
    """

    def __init__(self, threads: list[Check], degraded: list[Check]) -> None:
        self._threads = threads
        self._degraded = degraded

    def report(self) -> HealthReport:
        """Run every check now."""
        unhealthy = tuple(reason for check in self._threads if (reason := check()))
        degraded = tuple(reason for check in self._degraded if (reason := check()))
        return HealthReport(unhealthy, degraded)


def watch(report: HealthReport, notifier: Notifier, told: str) -> str:
    """Ping the watchdog while healthy; tell systemd and the log when health changed.

    Args:
        report: the health now.
        notifier: systemd's.
        told: the summary last told (returned: the one told now).
    """
    if report.healthy:  # a dead thread stops the pings: systemd restarts the link
        notifier.watchdog()
    summary = report.summary()
    if summary != told:
        notifier.status(summary if report.status == "ok" else f"{report.status}: {summary}")
        event = {"ok": "link_healthy", "degraded": "link_degraded"}.get(report.status)
        (log.info if report.status == "ok" else log.error)(
            event or "link_unhealthy", reasons=[*report.unhealthy, *report.degraded]
        )
    return summary


def thread_check(name: str, alive: Callable[[], bool], why: Callable[[], str]) -> Check:
    """A check of one thread: ``name`` and ``why()`` once ``alive()`` is False."""

    def check() -> str:
        if alive():
            return ""
        detail = why()
        return f"the {name} thread died" + (f": {detail}" if detail else "")

    return check
