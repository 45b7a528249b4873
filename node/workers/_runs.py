"""One run's place in the worker pool: its Context, app, waiting tasks and worker."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

from fedzero.core import Context

from ._channel import WorkerReply
from ._processes import Task, WorkerProc


@dataclasses.dataclass(slots=True)
class RunSlot:
    """A run in the pool: the tasks waiting for its worker, and the worker.

    Attributes:
        context: the agent's Context of the run.
        app_dir: the app folder its worker loads.
        queue: tasks not yet handed to the worker, oldest first.
        worker: the run's current worker (None: none yet, or it died).
    """

    context: Context
    app_dir: Path
    queue: collections.deque[Task] = dataclasses.field(default_factory=collections.deque)
    worker: WorkerProc | None = None

    @property
    def running(self) -> Task | None:
        """The task the worker is busy with, if any."""
        return self.worker.current if self.worker is not None else None

    def tasks(self) -> list[Task]:
        """Every task of the run not yet answered (running, then waiting)."""
        running = self.running
        return [*([running] if running is not None else []), *self.queue]

    def pop_late(self, now: float) -> list[Task]:
        """Remove and return the waiting tasks past their deadline at ``now``."""
        late = [t for t in self.queue if t.deadline is not None and now >= t.deadline.at]
        for task in late:
            self.queue.remove(task)
        return late

    def overdue(self, now: float) -> Task | None:
        """The running task, if it is past its deadline at ``now``."""
        task = self.running
        if task is None or task.deadline is None or now < task.deadline.at:
            return None
        return task


def late_reply(task: Task) -> list[WorkerReply]:
    """The answer to a task past its deadline (none past its TTL: the link gave that one)."""
    if task.deadline is None or task.deadline.ttl:
        return []
    return [WorkerReply.of(task.deadline.error(task.message))]
