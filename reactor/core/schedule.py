"""Due times without polling: a heap of monotonic instants, one timer armed for the earliest.

A plain structure: the node core adds and cancels entries and asks for what is due; its driver
arms one loop timer for :meth:`TimerHeap.earliest`. Cancelling is O(1) (the entry is skipped
when it surfaces), which costs far less memory per waiting job than a loop handle per job.
"""

from __future__ import annotations

import heapq
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Entries due within this many seconds fire together with the one that armed the timer.
SLACK = 0.0005


class TimerHeap(Generic[T]):
    """Items keyed by a due time on a monotonic clock."""

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []
        self._seq = 0
        self._live = 0

    def add(self, due: float, item: T) -> object:
        """Schedule ``item`` at ``due``; returns a token for :meth:`cancel`."""
        self._seq += 1
        entry = [due, self._seq, item]
        heapq.heappush(self._heap, entry)
        self._live += 1
        return entry

    def cancel(self, token: object) -> bool:
        """Drop a scheduled item; False if it already fired or was cancelled."""
        if not isinstance(token, list) or token[2] is None:
            return False
        token[2] = None
        self._live -= 1
        return True

    def pop_due(self, now: float) -> list[T]:
        """Every item due at ``now`` (within SLACK), earliest first."""
        heap = self._heap
        limit = now + SLACK
        ready: list[T] = []
        while heap and heap[0][0] <= limit:
            entry = heapq.heappop(heap)
            item = entry[2]
            if item is not None:
                entry[2] = None
                self._live -= 1
                ready.append(item)
        return ready

    def earliest(self) -> float | None:
        """The due time of the next live item, or None."""
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def items(self) -> list[T]:
        """Every live item (for stopping and views)."""
        return [e[2] for e in self._heap if e[2] is not None]

    def clear(self) -> None:
        """Forget every entry."""
        self._heap.clear()
        self._live = 0

    def __len__(self) -> int:
        return self._live
