"""Node liveness without scans, and registration under a budget.

:class:`Liveness` keeps one timer per online node in a heap, due when the
node's heartbeat budget would run out. Any message from a node counts as a
heartbeat (the IO thread just stamps ``last_seen``); a due timer whose node
was heard since is pushed back, so the work is O(log N) per node per timeout,
never O(N) per tick. Silence is judged against the link's own progress: the
last moment the IO thread had read everything the fleet socket held
(``caught_up``). A link that falls behind reading its socket, or whose loop
stalled, never declares a node dead for pings it has not read yet.

:class:`Admission` bounds how many ``hello``s the link handles per second:
over the budget, a hello is refused ``OVERLOADED`` with ``retry_after``
seconds that spread the refused nodes over the time the budget needs to
serve them (a virtual queue), instead of letting a stampede of
re-registrations starve the loop.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Final

from .._state import Node

HELLO_RATE: Final = 1000.0
"""Registrations the link handles per second (its registration budget)."""
HELLO_BURST: Final = 1000.0
"""Registrations it handles at once, before the budget applies."""


class Liveness:
    """Heartbeat timers of online nodes (IO thread only).

    Args:
        nodes: the registry (node id -> node).
        timeout: seconds of silence after which a node is offline.
        recheck: seconds after which a node that looked silent while the link
            was behind is looked at again.
    """

    def __init__(self, nodes: dict[int, Node], timeout: float, recheck: float) -> None:
        self._nodes = nodes
        self._timeout = timeout
        self._recheck = recheck
        self._heap: list[tuple[float, int]] = []
        self.caught_up = 0.0
        """When (monotonic) the IO thread last had read every message the fleet socket held."""

    def __len__(self) -> int:
        return len(self._heap)

    def watch(self, node: Node) -> None:
        """Start the timer of a node that just registered."""
        heapq.heappush(self._heap, (node.last_seen + self._timeout, node.node_id))

    def next_due(self) -> float:
        """Monotonic time of the earliest timer (inf: none)."""
        return self._heap[0][0] if self._heap else float("inf")

    def check(self, now: float, offline: Callable[[Node, str], None]) -> None:
        """Take offline the nodes silent past their budget, as the link has read them."""
        heap, timeout = self._heap, self._timeout
        judged_at = min(now, self.caught_up)
        while heap and heap[0][0] <= now:
            _, node_id = heapq.heappop(heap)
            node = self._nodes.get(node_id)
            if node is None or not node.online:
                continue  # gone, or a stale timer of an earlier registration
            deadline = node.last_seen + timeout
            if judged_at > deadline:
                offline(node, f"no heartbeat for {judged_at - node.last_seen:.1f}s")
            else:  # heard since, or the link is behind: look again later
                heapq.heappush(heap, (max(deadline, now + self._recheck), node_id))


class Admission:
    """The registration budget: a token bucket and a virtual queue for refusals.

    Args:
        rate: hellos handled per second.
        burst: hellos handled at once.
    """

    def __init__(self, rate: float = HELLO_RATE, burst: float = HELLO_BURST) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._owed = 0.0  # refused hellos told to come back, not yet served by the budget
        self._at = 0.0

    def admit(self, now: float) -> float:
        """0.0 if a hello may be handled now, else the seconds to tell it to wait."""
        elapsed = max(0.0, now - self._at)
        self._at = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._owed = max(0.0, self._owed - elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        self._owed += 1.0
        return round(0.5 + self._owed / self._rate, 2)
