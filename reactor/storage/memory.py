"""Memory storage: the fastest backend, and the one that forgets everything when the node stops."""

from __future__ import annotations

from collections.abc import Sequence

from reactor.jobs.record import JobRecord
from reactor.storage.base import Storage


class MemoryStorage(Storage):
    """Holds the node's own record objects in a dict; nothing survives a restart."""

    durable = False

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}

    async def add(self, jobs: Sequence[JobRecord]) -> None:
        store = self._jobs
        for job in jobs:
            store[job.id] = job

    def add_nowait(self, jobs: Sequence[JobRecord]) -> bool:
        store = self._jobs
        for job in jobs:
            store[job.id] = job
        return True

    def exists_nowait(self, jobs: Sequence[JobRecord]) -> list[bool] | None:
        return [job.id in self._jobs for job in jobs]

    def update(self, job: JobRecord) -> None:
        if job.id in self._jobs:  # a deleted record stays deleted: that is how a job is cancelled
            self._jobs[job.id] = job

    def remove(self, job: JobRecord) -> None:
        self._jobs.pop(job.id, None)

    async def exists(self, jobs: Sequence[JobRecord]) -> list[bool]:
        return [job.id in self._jobs for job in jobs]

    async def unfinished(self) -> list[JobRecord]:
        return []

    def get(self, job_id: str) -> JobRecord | None:
        """The stored record, for tests and in-process inspection."""
        return self._jobs.get(job_id)

    def delete(self, job_id: str) -> bool:
        """Delete a record as a monitor would; a deferred or periodic job then never runs."""
        return self._jobs.pop(job_id, None) is not None

    def __len__(self) -> int:
        return len(self._jobs)
