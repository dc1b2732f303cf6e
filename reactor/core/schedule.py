"""Due times without polling: a heap of monotonic instants, one timer armed for the earliest.

A plain structure: the node core adds and cancels entries and asks for what is due; its driver
arms one loop timer for :meth:`TimerHeap.earliest`. Cancelling is O(1) (the entry is skipped
when it surfaces), which costs far less memory per waiting job than a loop handle per job.
"""

from __future__ import annotations

import heapq
from typing import Any, Generic, Protocol, TypeVar


class Ordered(Protocol):
    """An item the heap can order among entries due at the same instant."""

    def __lt__(self, other: Any, /) -> bool: ...


T = TypeVar("T", bound=Ordered)

#: Entries due within this many seconds fire together with the one that armed the timer.
SLACK = 0.0005


class TimerHeap(Generic[T]):
    """Items keyed by a due time on a monotonic clock."""

    def __init__(self) -> None:
        # Entries are (due, item) tuples: 48 bytes where a [due, seq, item] list and its seq took
        # 128, per waiting job. Items due at the same instant are ordered by their own ``<``.
        self._heap: list[tuple[float, T]] = []
        self._live = 0
        #: The ids of entries cancelled but still in the heap (skipped when they surface).
        self._cancelled: set[int] = set()

    def add(self, due: float, item: T) -> object:
        """Schedule ``item`` at ``due``; returns a token for :meth:`cancel`."""
        entry = (due, item)
        heapq.heappush(self._heap, entry)
        self._live += 1
        return entry

    def cancel(self, token: object) -> bool:
        """Drop a scheduled item; False if it was cancelled already.

        A token that has fired must not be cancelled (its owner forgets it when it fires, as the
        node's run queue does): the heap no longer knows it.
        """
        if not isinstance(token, tuple):
            return False
        key = id(token)  # unique while the entry is in the heap, which holds it
        cancelled = self._cancelled
        if key in cancelled:
            return False
        cancelled.add(key)
        self._live -= 1
        if len(cancelled) > 64 and len(cancelled) * 2 > len(self._heap):
            self._compact()
        return True

    def _compact(self) -> None:
        """Rebuild the heap without its cancelled entries, so a cancelled item is not held
        until its due time (at most half the heap is ever cancelled entries)."""
        cancelled = self._cancelled
        self._heap = [e for e in self._heap if id(e) not in cancelled]
        heapq.heapify(self._heap)
        cancelled.clear()

    def pop_due(self, now: float) -> list[T]:
        """Every item due at ``now`` (within SLACK), earliest first."""
        heap = self._heap
        cancelled = self._cancelled
        limit = now + SLACK
        ready: list[T] = []
        while heap and heap[0][0] <= limit:
            entry = heapq.heappop(heap)
            if cancelled and id(entry) in cancelled:
                cancelled.discard(id(entry))
                continue
            self._live -= 1
            ready.append(entry[1])
        return ready

    def earliest(self) -> float | None:
        """The due time of the next live item, or None."""
        heap = self._heap
        cancelled = self._cancelled
        while heap and cancelled and id(heap[0]) in cancelled:
            cancelled.discard(id(heapq.heappop(heap)))
        return heap[0][0] if heap else None

    def items(self) -> list[T]:
        """Every live item (for stopping and views)."""
        cancelled = self._cancelled
        return [e[1] for e in self._heap if id(e) not in cancelled]

    def clear(self) -> None:
        """Forget every entry."""
        self._heap.clear()
        self._cancelled.clear()
        self._live = 0

    def __len__(self) -> int:
        return self._live
