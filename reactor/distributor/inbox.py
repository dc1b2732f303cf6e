"""The hand-off of jobs and cancels from any thread to the distributor's loop, in order."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

from reactor.core.distributor import DistributorCore
from reactor.core.jobstate import JobState
from reactor.errors import JobCancelledError


class Inbox:
    """Jobs enqueued and cancels asked from any thread, waiting for the loop to take them.

    Any number of puts between two turns of the loop schedule one wake-up, which calls
    ``deliver`` on the loop (the distributor then hands everything to its core with
    :meth:`hand_to`).
    """

    def __init__(self, deliver: Callable[[], None]) -> None:
        self.jobs: deque[JobState] = deque()
        self.cancels: deque[str] = deque()
        self._deliver = deliver
        self._pending = False  # a wake-up is scheduled and has not run yet
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    def __len__(self) -> int:
        return len(self.jobs)

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver on ``loop`` from now on (call from its thread); wakes it for jobs queued."""
        self._loop = loop
        self._thread = threading.get_ident()
        if self.jobs:
            self.wake()

    def put(self, job: JobState) -> None:
        """Queue a checked job (any thread)."""
        self.jobs.append(job)
        if not self._pending:
            self.wake()

    def cancel(self, job_id: str) -> None:
        """Queue a cancel (any thread)."""
        self.cancels.append(job_id)
        if not self._pending:
            self.wake()

    def wake(self) -> None:
        """Have the loop deliver soon (once, however many puts come before it does)."""
        loop = self._loop
        if loop is None:
            return
        self._pending = True
        if threading.get_ident() == self._thread:
            loop.call_soon(self._run)
        else:
            try:
                loop.call_soon_threadsafe(self._run)
            except RuntimeError:  # the loop closed under us
                self._pending = False

    def _run(self) -> None:
        self._pending = False
        self._deliver()

    def hand_to(self, core: DistributorCore, now: float) -> None:
        """Give the queued jobs, then the cancels, to ``core``, and let it send (on the loop)."""
        jobs = self.jobs
        submit = core.submit
        while jobs:
            submit(jobs.popleft(), now)
        cancels = self.cancels
        while cancels:
            job_id = cancels.popleft()
            if not self._cancel_queued(job_id):
                core.cancel(job_id, now)
        core.pump(now)

    def _cancel_queued(self, job_id: str) -> bool:
        """Cancel a job still queued here (put after the jobs were handed over)."""
        for queued in self.jobs:
            if queued.id == job_id:
                self.jobs.remove(queued)
                queued.handle.resolve(None, JobCancelledError(f"job {job_id} was cancelled"))
                return True
        return False

    def clear(self) -> list[JobState]:
        """Take every queued job out (the distributor stops)."""
        jobs = list(self.jobs)
        self.jobs.clear()
        return jobs
