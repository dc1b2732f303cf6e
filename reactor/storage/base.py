"""The small async interface every job storage backend implements."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from asyncio import Future
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reactor.jobs.record import JobRecord


@dataclass(slots=True)
class Pruned:
    """What one :meth:`Storage.prune` call removed (or, dry, would remove) of one status.

    ``removed`` holds ``(job id, job name, finished at)``, oldest first; ``oldest`` is when the
    oldest record of the status still kept finished (None: none is left), and ``left`` how many
    are left, so the node knows when its next pass is due.
    """

    removed: list[tuple[str, str, float]] = field(default_factory=list)
    oldest: float | None = None
    left: int = 0


class Storage(ABC):
    """Where a node keeps its jobs.

    Only :meth:`add` is awaited on the hot path: a node acknowledges a job to its distributor
    after ``add`` returns, so a durable backend must have persisted the job by then. Later state
    changes go through :meth:`update` and :meth:`remove`, which a backend may batch and write
    behind (in call order per job); :meth:`flush` waits until they are written.
    """

    #: True when the jobs survive a restart of the node process.
    durable: bool = False

    #: Called on the event loop's thread as ``on_poisoned(record, job_id, reason)`` when the
    #: stored data of an *acknowledged* job cannot be written or read (``WRONGTYPE``: someone
    #: replaced its hash; a corrupt record found at resume and quarantined). ``record`` is the
    #: node's record when the storage has it, else None. The write is dropped; the node should
    #: fail the job (error feedback). New jobs in an ``add()`` are reported by the
    #: :class:`~reactor.errors.PoisonedRecordsError` that ``add()`` raises instead.
    on_poisoned: Callable[[JobRecord | None, str, str], None] | None = None

    #: Called on the event loop's thread as ``on_written(seconds)`` after each write of a
    #: batch, with how long it took (metrics). Backends that write nothing leave it uncalled.
    on_written: Callable[[float], None] | None = None

    #: Called on the event loop's thread as ``on_kept(status)`` when a finished record is kept
    #: (written with a status of :data:`~reactor.jobs.record.FINISHED`): the node's pruner
    #: arms its timer from it. Unset (None) when nothing is pruned.
    on_kept: Callable[[str], None] | None = None

    #: True when :meth:`take_retried` can return jobs (a store the monitor can retry jobs in).
    retries: bool = False

    async def take_retried(self, wait: float) -> list[JobRecord]:
        """Jobs the monitor asked this node to run again (their records reset to ``new``),
        waiting up to ``wait`` seconds for the first; an empty list when none came.

        Raises:
            StorageUnavailableError: the backend cannot be reached.
        """
        await asyncio.sleep(wait)
        return []

    async def prune(
        self,
        status: str,
        *,
        before: float | None = None,
        keep_last: int | None = None,
        dry_run: bool = False,
    ) -> Pruned:
        """Remove kept records of ``status`` (complete, failed or cancelled), oldest first.

        A record goes when it finished before ``before`` (epoch seconds; None: any age) and is
        not among the ``keep_last`` newest (None: none is spared). Each record's status is
        checked as it goes, so a job run again since (``monitor retry``) is never touched.
        Backends without an index of kept records remove nothing.

        Raises:
            StorageUnavailableError: the backend cannot be reached.
        """
        return Pruned()

    async def start(self, node_name: str) -> None:
        """Connect and prepare to hold ``node_name``'s jobs."""

    async def close(self) -> None:
        """Write what is pending (best effort) and release connections."""

    @abstractmethod
    async def add(self, jobs: Sequence[JobRecord]) -> None:
        """Persist newly received jobs.

        Raises:
            StorageUnavailableError: the backend cannot be reached; nothing was acknowledged.
            PoisonedRecordsError: the jobs its ``failed`` names could not be written (their
                keys hold foreign data); every other job of the call *is* stored.
        """

    def add_nowait(self, jobs: Sequence[JobRecord]) -> bool:
        """Store ``jobs`` synchronously if this backend can; False means: await :meth:`add`."""
        return False

    def exists_nowait(self, jobs: Sequence[JobRecord]) -> list[bool] | None:
        """:meth:`exists` answered synchronously, or None when the backend must be awaited."""
        return None

    @abstractmethod
    def update(self, job: JobRecord) -> None:
        """Record the job's current state (status, attempt, run_at, args, ...)."""

    @abstractmethod
    def remove(self, job: JobRecord) -> None:
        """Forget a finished job."""

    async def flush(self) -> None:
        """Wait until every update and removal so far has been written."""

    def write_ahead(self, jobs: Sequence[JobRecord]) -> Future[None] | None:
        """Make the current state of ``jobs`` (their attempt, ``in progress``) durable before
        their bodies start, so that a crash during a body counts as an attempt. This writes
        them (:meth:`update` by default; a backend may write only what a start changes).

        Returns:
            None when there is nothing to wait for (memory storage, which a crash forgets
            anyway); else a future, done once every one of ``jobs`` is written, across outages.
            It fails with :class:`~reactor.errors.PoisonedRecordsError` naming the jobs whose
            state could not be written (their keys hold foreign data); the others are written.
        """
        for job in jobs:
            self.update(job)
        return None

    @abstractmethod
    async def exists(self, jobs: Sequence[JobRecord]) -> list[bool]:
        """Whether each job's record is still stored (a deleted record cancels the job)."""

    async def tombstoned(self, jobs: Sequence[JobRecord]) -> list[bool]:
        """Whether each job's record was deleted on purpose (a destroy left a tombstone).

        A timer that finds a record missing asks this: True is a cancellation, False a lost
        record (``JobLost``). Backends without tombstones answer True (every deletion is one).
        """
        return [True] * len(jobs)

    def _poisoned(self, job: JobRecord | None, job_id: str, reason: str) -> None:
        """Report one poisoned record through :attr:`on_poisoned`, if set (never raises)."""
        if self.on_poisoned is None:
            return
        try:
            self.on_poisoned(job, job_id, reason)
        except Exception:  # the hook's bug must not stop the storage's writer
            logging.getLogger("reactor.storage").exception("on_poisoned failed for job %s", job_id)

    @abstractmethod
    async def unfinished(self) -> list[JobRecord]:
        """The node's stored jobs that are not finished, for resuming after a restart."""

    @property
    def available(self) -> bool:
        """False while the backend is known to be unreachable."""
        return True

    async def wait_available(self) -> None:
        """Return once the backend can be reached again (at once for backends that cannot fail)."""
