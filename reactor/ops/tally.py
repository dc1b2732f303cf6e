"""Cheap accumulators behind :mod:`reactor.ops.metrics`: plain ints and batched histograms.

prometheus-client's ``Counter.inc()`` and ``Histogram.observe()`` take a lock and cost about half
a microsecond and a microsecond in CPython; a node runs a trivial job in a few microseconds, so
that would show. Here the event loop's thread adds to plain ints and appends to a list; a
histogram folds its list into bucket counts once every :data:`FOLD_AT` values (one sort, one
bisection per bucket), and the metrics server's thread reads without changing anything, under a
lock the loop takes only when it folds.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from typing import Final

#: Values a histogram keeps unsorted before it folds them into its buckets.
FOLD_AT: Final = 512

#: Indexes into :attr:`JobTally.counts`, and the counters' names.
RECEIVED, STARTED, SUCCEEDED, FAILED, RETRIED, CANCELLED = range(6)
COUNTERS: Final = ("received", "started", "succeeded", "failed", "retried", "cancelled")


class Hist:
    """A histogram with fixed upper bounds, fed from one thread and read from any.

    Args:
        bounds: the buckets' upper bounds, ascending (``+Inf`` is implied).
    """

    __slots__ = ("_lock", "bounds", "counts", "pending", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.total = 0.0
        self.pending: list[float] = []
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        """Record one value (from the feeding thread only)."""
        pending = self.pending
        pending.append(value)
        if len(pending) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        """Move the pending values into the bucket counts (from the feeding thread only)."""
        with self._lock:
            pending, self.pending = self.pending, []
            _merge(self.counts, self.bounds, pending)
            self.total += sum(pending)

    def read(self) -> tuple[list[int], int, float]:
        """``(cumulative counts per bound and +Inf, count, sum)``, from any thread."""
        with self._lock:
            counts = list(self.counts)
            pending = list(self.pending)  # one C-level copy: safe against a concurrent append
            total = self.total
        _merge(counts, self.bounds, pending)
        cumulative, running = [], 0
        for count in counts:
            running += count
            cumulative.append(running)
        return cumulative, running, total + sum(pending)


def _merge(counts: list[int], bounds: tuple[float, ...], values: list[float]) -> None:
    """Add ``values`` to per-bucket ``counts`` (sorts ``values``)."""
    if not values:
        return
    values.sort()
    before = 0
    for i, bound in enumerate(bounds):
        upto = bisect_right(values, bound)
        counts[i] += upto - before
        before = upto
    counts[-1] += len(values) - before


class JobTally:
    """Everything counted for one job name: six counters and three histograms."""

    __slots__ = ("counts", "lag", "run", "wait")

    def __init__(
        self, run: tuple[float, ...], wait: tuple[float, ...], lag: tuple[float, ...]
    ) -> None:
        self.counts = [0] * len(COUNTERS)
        self.run = Hist(run)
        self.wait = Hist(wait)
        self.lag = Hist(lag)
