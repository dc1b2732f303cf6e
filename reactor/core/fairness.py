"""FairQueue: due jobs with a ``fair_key=`` taking turns per key, within each priority (issue 20).

One key's backlog of ten thousand jobs delays another key's next job by at most one job per
waiting key: each priority keeps a rotation of the keys that have due jobs, and a pop takes the
oldest job of the key at the head and moves that key to the back. The run queue
(:class:`reactor.core.runqueue.RunQueue`) keeps priorities first: it serves this queue when its
best priority is higher than its plain jobs', and alternates with them on a tie (jobs without a
key count as one more key).
"""

from __future__ import annotations

from collections import deque

from reactor.jobs.record import JobRecord


class _Ring:
    """The keys of one priority in their turn order, each with its due jobs (oldest first)."""

    __slots__ = ("jobs", "turns")

    def __init__(self) -> None:
        self.turns: deque[str] = deque()
        self.jobs: dict[str, deque[JobRecord]] = {}


class FairQueue:
    """Due jobs with a fair key (see the module docstring)."""

    def __init__(self) -> None:
        self.rings: dict[int, _Ring] = {}
        self.size = 0

    def push(self, job: JobRecord, key: str, *, front: bool = False) -> None:
        """Queue a due job under ``key`` (``front``: ahead of its key's other jobs)."""
        ring = self.rings.get(job.priority)
        if ring is None:
            ring = self.rings[job.priority] = _Ring()
        jobs = ring.jobs.get(key)
        if jobs is None:
            jobs = ring.jobs[key] = deque()
            if front:
                ring.turns.appendleft(key)
            else:
                ring.turns.append(key)
        if front:
            jobs.appendleft(job)
        else:
            jobs.append(job)
        self.size += 1

    def top(self) -> int | None:
        """The highest priority with a due job, or None."""
        return max(self.rings) if self.rings else None

    def pop(self, priority: int) -> JobRecord:
        """The next job of ``priority``: the oldest of the key whose turn it is."""
        ring = self.rings[priority]
        key = ring.turns.popleft()
        jobs = ring.jobs[key]
        job = jobs.popleft()
        if jobs:
            ring.turns.append(key)
        else:
            del ring.jobs[key]
            if not ring.turns:
                del self.rings[priority]
        self.size -= 1
        return job

    def take_all(self) -> list[JobRecord]:
        """Empty the queue: its jobs, higher priorities first, in turn order."""
        taken = []
        for priority in sorted(self.rings, reverse=True):
            while priority in self.rings:
                taken.append(self.pop(priority))
        return taken

    def waiting(self) -> dict[str, int]:
        """How many due jobs each key has (for views and tests)."""
        counts: dict[str, int] = {}
        for ring in self.rings.values():
            for key, jobs in ring.jobs.items():
                counts[key] = counts.get(key, 0) + len(jobs)
        return counts
