"""Memory storage: the fastest backend, and the one that forgets everything when the node stops."""

from __future__ import annotations

import time
from collections.abc import Sequence

from reactor.jobs.record import FINISHED, IS_FINISHED, JobRecord
from reactor.storage.base import Pruned, Storage


class MemoryStorage(Storage):
    """Holds the node's own record objects in a dict; nothing survives a restart."""

    durable = False

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        #: Per final status, the kept records' ids -> when they finished, oldest first (a dict
        #: keeps insertion order): the index pruning reads instead of scanning every record.
        self._kept: dict[str, dict[str, float]] = {status: {} for status in FINISHED}

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
            if job.status in IS_FINISHED:  # kept: index it for pruning
                self._kept[job.status].setdefault(job.id, time.time())
                if self.on_kept is not None:
                    self.on_kept(job.status)

    async def prune(
        self,
        status: str,
        *,
        before: float | None = None,
        keep_last: int | None = None,
        dry_run: bool = False,
    ) -> Pruned:
        """See :meth:`Storage.prune`; reads the per-status index, not every record."""
        index = self._kept[status]
        allowed = len(index) if keep_last is None else max(0, len(index) - keep_last)
        result = Pruned()
        for job_id, finished in list(index.items())[:allowed]:
            if before is not None and finished >= before:
                break
            job = self._jobs.get(job_id)
            if job is None or job.status != status:  # destroyed, or run again since
                del index[job_id]
                continue
            result.removed.append((job_id, job.name, finished))
            if not dry_run:
                del index[job_id], self._jobs[job_id]
        result.oldest = next(iter(index.values()), None)
        result.left = len(index)
        return result

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
