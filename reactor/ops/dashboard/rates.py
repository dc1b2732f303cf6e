"""Jobs per second over the last minutes, from the ``finished`` counts distributors publish.

Each announcement's snapshot carries ``taken_at`` (epoch seconds) and ``finished`` (final
feedbacks since the distributor started). :class:`Rates` keeps those readings per distributor
session and turns them into per-bucket rates by linear interpolation, so snapshots published
at any interval, by any number of distributors, add up to one series. No I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from typing import Final

#: Seconds of history kept and charted.
WINDOW: Final = 600.0
#: Seconds per chart bucket.
BUCKET: Final = 10.0


class Rates:
    """Readings of finished-job counters, per distributor session, and their rates."""

    def __init__(self, window: float = WINDOW, bucket: float = BUCKET) -> None:
        self.window = window
        self.bucket = bucket
        self._points: dict[str, deque[tuple[float, float]]] = {}

    def add(self, session: str, taken_at: float, finished: float) -> None:
        """One distributor's reading (repeated readings are ignored)."""
        points = self._points.setdefault(session, deque())
        if points and taken_at <= points[-1][0]:
            return
        if points and finished < points[-1][1]:  # a restarted counter: start over
            points.clear()
        points.append((taken_at, finished))
        while points and points[0][0] < taken_at - self.window - self.bucket:
            points.popleft()

    def forget_older_than(self, when: float) -> None:
        """Drop sessions whose last reading is older than ``when``."""
        for session in [s for s, p in self._points.items() if not p or p[-1][0] < when]:
            del self._points[session]

    def series(self, now: float) -> list[tuple[float, float]]:
        """``(bucket start, jobs per second)`` for each bucket of the window ending at ``now``;
        what finished between two readings is spread evenly over the time between them."""
        first = now - self.window
        starts = [first + i * self.bucket for i in range(int(self.window / self.bucket))]
        totals = [0.0] * len(starts)
        for points in self._points.values():
            for i, start in enumerate(starts):
                a = _at(points, start)
                b = _at(points, start + self.bucket)
                if a is not None and b is not None:
                    totals[i] += max(0.0, b - a)
        return [(start, total / self.bucket) for start, total in zip(starts, totals, strict=True)]


def _at(points: deque[tuple[float, float]], t: float) -> float | None:
    """The counter at time ``t``: interpolated between readings, flat beyond them (no reading
    says anything happened there); None without readings."""
    if not points:
        return None
    if t <= points[0][0]:
        return points[0][1]
    prev = points[0]
    for point in points:
        if point[0] >= t:
            share = (t - prev[0]) / (point[0] - prev[0])
            return prev[1] + share * (point[1] - prev[1])
        prev = point
    return points[-1][1]
