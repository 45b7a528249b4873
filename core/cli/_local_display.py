"""What ``fedzero local`` shows: a live bar for the round in flight, a line per round."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

MAX_ERRORS_SHOWN = 3
"""How many distinct node errors a failed round prints."""


def progress_bar(console: Console) -> Progress:
    """The live progress bar of the round in flight (transient: it leaves no trace)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


class Display:
    """Turns Grid events into progress bars, one line per reported round, and a verdict.

    A round whose link-side aggregation folded no reply at all is *empty*: the
    run cannot have learned from it, so ``fedzero local`` fails (exit 1) and
    prints the first few distinct reasons the nodes gave.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[tuple[str, str], Any] = {}
        self.failures = 0
        self.reports: list[dict[str, Any]] = []
        self.empty_rounds: list[tuple[str, list[str]]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        key = (event.get("message_type", ""), event.get("group_id", ""))
        kind = event["event"]
        if kind == "sent":
            for task in self.tasks.values():  # one live bar: the round in flight
                self.progress.remove_task(task)
            self.tasks.clear()
            label = f"{key[0]:<8} round {key[1]}" if key[1] else key[0]
            self.tasks[key] = self.progress.add_task(label, total=event["count"])
        elif kind == "reply" and key in self.tasks:
            self.failures += int(event["error"])
            self.progress.advance(self.tasks[key])
        elif kind == "aggregated":
            self._aggregated(key, event)
        elif kind == "report":
            self.reports.append(event)
            shown = "  ".join(f"{k}={_fmt(v)}" for k, v in event["metrics"].items())
            self.progress.console.print(f"round {event['round']:>3}  {escape(shown)}")

    def _aggregated(self, key: tuple[str, str], event: dict[str, Any]) -> None:
        self.failures += int(event["failures"])
        if key in self.tasks:
            done = event["replies"] + event["failures"]
            self.progress.update(self.tasks[key], completed=done)
        if event["replies"] == 0:
            label = f"{key[0]} round {key[1]}" if key[1] else key[0]
            self.empty_rounds.append((label, list(event.get("errors", []))))

    def verdict(self, console: Console) -> int:
        """Print the run's summary; return 0, or 1 when a round aggregated nothing."""
        if self.empty_rounds:
            label, errors = self.empty_rounds[0]
            count = len(self.empty_rounds)
            console.print(f"[red]{count} round(s) aggregated no reply[/] (first: {label})")
            for reason in errors[:MAX_ERRORS_SHOWN]:
                console.print(f"  node error: {escape(reason)}")
            return 1
        rounds = len(self.reports)
        last = self.reports[-1]["metrics"] if self.reports else {}
        shown = "  ".join(f"{k}={_fmt(v)}" for k, v in last.items())
        console.print(
            f"[green]run finished[/]: {rounds} rounds reported, "
            f"{self.failures} failed replies" + (f"; final {escape(shown)}" if shown else "")
        )
        return 0


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
