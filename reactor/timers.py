"""Due-time scheduling without polling: a heap of absolute instants under a single loop timer.

One ``loop.call_at`` handle is armed for the earliest due time; cancelling an entry is O(1) (it is
skipped when it surfaces). This costs far less memory per waiting job than a handle per job.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Entries due within this many seconds fire together with the one that armed the timer.
SLACK = 0.0005


class TimerQueue(Generic[T]):
    """Calls ``fire(items)`` with every item whose due time (epoch seconds) has come."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fire: Callable[[list[T]], None]) -> None:
        self._loop = loop
        self._fire = fire
        self._heap: list[list[Any]] = []
        self._seq = 0
        self._live = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = float("inf")

    def add(self, due: float, item: T) -> object:
        """Schedule ``item`` at epoch time ``due``; returns a token for :meth:`cancel`."""
        self._seq += 1
        entry = [due, self._seq, item]
        heapq.heappush(self._heap, entry)
        self._live += 1
        if due < self._armed_for:
            self._arm(due)
        return entry

    def cancel(self, token: object) -> bool:
        """Drop a scheduled item; returns False if it already fired or was cancelled."""
        entry = token if isinstance(token, list) else None
        if entry is None or entry[2] is None:
            return False
        entry[2] = None
        self._live -= 1
        return True

    def _arm(self, due: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_for = due
        delay = due - time.time()
        self._handle = self._loop.call_at(self._loop.time() + max(delay, 0.0), self._run)

    def _run(self) -> None:
        self._handle = None
        self._armed_for = float("inf")
        heap = self._heap
        now = time.time() + SLACK
        ready: list[T] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            item = entry[2]
            if item is not None:
                entry[2] = None
                self._live -= 1
                ready.append(item)
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0][0])
        if ready:
            self._fire(ready)

    def close(self) -> None:
        """Disarm the timer and forget every entry."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._heap.clear()
        self._live = 0
        self._armed_for = float("inf")

    def __len__(self) -> int:
        return self._live
