"""Upload credit: how many large replies may be in flight to the link at once.

Nodes ask before sending a reply larger than the credit threshold; the link
grants requests while the window has room, round-robin across runs so that one
run's huge model cannot starve another run's uploads.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque


@dataclasses.dataclass(frozen=True, slots=True)
class CreditRequest:
    """A node's request to upload the reply to ``reply_to`` (``nbytes`` long)."""

    reply_to: str
    node_id: int
    run_id: int
    nbytes: int


class CreditWindow:
    """A bounded window of concurrent uploads, fair across runs.

    Args:
        max_uploads: uploads admitted at once.
        max_bytes: bytes admitted at once; a single larger upload is admitted
            when nothing else is in flight, so it cannot wait forever.
    """

    def __init__(self, max_uploads: int, max_bytes: int) -> None:
        self._max_uploads = max_uploads
        self._max_bytes = max_bytes
        self._granted: dict[str, CreditRequest] = {}
        self._bytes = 0
        self._waiting: OrderedDict[int, deque[CreditRequest]] = OrderedDict()
        self.high_water = 0
        """Most uploads ever admitted at once."""

    @property
    def in_flight(self) -> int:
        """Uploads granted and not yet released."""
        return len(self._granted)

    @property
    def bytes_in_flight(self) -> int:
        """Bytes granted and not yet released."""
        return self._bytes

    @property
    def waiting(self) -> int:
        """Requests queued for credit."""
        return sum(len(q) for q in self._waiting.values())

    def grant_of(self, reply_to: str) -> CreditRequest | None:
        """The credit granted to the reply to ``reply_to``, if any."""
        return self._granted.get(reply_to)

    def allowance(self, node_id: int) -> int:
        """The largest upload granted to ``node_id`` right now (0: none)."""
        return max((r.nbytes for r in self._granted.values() if r.node_id == node_id), default=0)

    def request(self, req: CreditRequest) -> list[CreditRequest]:
        """Queue ``req``; return the requests granted now (maybe including it)."""
        if req.reply_to in self._granted:
            return []
        self._waiting.setdefault(req.run_id, deque()).append(req)
        return self._grant()

    def release(self, reply_to: str) -> list[CreditRequest]:
        """Release the credit of ``reply_to`` (if any); return newly granted requests."""
        req = self._granted.pop(reply_to, None)
        if req is not None:
            self._bytes -= req.nbytes
        return self._grant()

    def drop_node(self, node_id: int) -> list[CreditRequest]:
        """Forget every request and grant of ``node_id``; return new grants."""
        for key in [k for k, r in self._granted.items() if r.node_id == node_id]:
            self._bytes -= self._granted.pop(key).nbytes
        self._filter(lambda r: r.node_id != node_id)
        return self._grant()

    def drop_run(self, run_id: int) -> list[CreditRequest]:
        """Forget every request and grant of ``run_id``; return new grants."""
        for key in [k for k, r in self._granted.items() if r.run_id == run_id]:
            self._bytes -= self._granted.pop(key).nbytes
        self._waiting.pop(run_id, None)
        return self._grant()

    def _filter(self, keep: object) -> None:
        for run_id in list(self._waiting):
            queue = deque(r for r in self._waiting[run_id] if keep(r))  # type: ignore[operator]
            if queue:
                self._waiting[run_id] = queue
            else:
                del self._waiting[run_id]

    def _fits(self, req: CreditRequest) -> bool:
        if not self._granted:
            return True
        return (
            len(self._granted) < self._max_uploads and self._bytes + req.nbytes <= self._max_bytes
        )

    def _grant(self) -> list[CreditRequest]:
        granted: list[CreditRequest] = []
        while self._waiting:
            run_id, queue = next(iter(self._waiting.items()))
            if not self._fits(queue[0]):
                break
            req = queue.popleft()
            self._granted[req.reply_to] = req
            self._bytes += req.nbytes
            self.high_water = max(self.high_water, len(self._granted))
            granted.append(req)
            del self._waiting[run_id]
            if queue:  # round-robin: this run goes to the back of the line
                self._waiting[run_id] = queue
        return granted
