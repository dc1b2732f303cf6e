"""When may a job start: the one rule the node driver, the write-ahead path and the simulation
all call.

A due job comes off the run queue in priority order (stale and cancelled jobs are settled and
jobs of an unsynced link held on the way, see :meth:`RunQueue.next_ready`). Then its kind
decides: a name the node does not know fails with ``NoSuchJob``; an ``async def`` job or a
``defer=True`` body needs one of ``capacity`` slots and waits for one when all are taken; a
``def`` job runs on the loop, one at a time, and needs none. A job that may start is begun: its
attempt is counted and written (or, for write-ahead, handed back to be written as a batch).
A job that carries limits (``@job(concurrency=, rate_limit=)``, ``concurrency_key=``,
``rate_key=``) also needs them granted (:class:`reactor.core.limits.Limits`); one without pays
a single check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from reactor.jobs import record as R
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobEntry

if TYPE_CHECKING:
    from reactor.core.node import NodeCore

log = logging.getLogger("reactor.node")

#: What the node knows of a job name: its entry (``is_async`` says it needs a slot), or None.
Kinds = Callable[[str], JobEntry | None]

#: A job that may start, with its entry (what to run).
Started = tuple[JobRecord, JobEntry]


class StartRule:
    """Decides which ready jobs start now and counts the running ones (see the module docstring).

    Args:
        core: the node's core (its run queue, outcomes, port and counters).
        capacity: how many ``async``/deferred jobs may run at once.
        kinds: the entry of a job name, or None for a name the node does not know.
    """

    def __init__(self, core: NodeCore, *, capacity: int, kinds: Kinds) -> None:
        self.core = core
        self.queue = core.queue
        self.port = core.port
        self.stats = core.stats
        self.capacity = capacity
        self.kinds = kinds
        self.limits = core.limits
        self.running = 0  # begun and not ended: slot jobs, and the def job on the loop
        #: config["log_job_processing"], read once: checked for every job on the hot path.
        self.log_processing = bool(core.config["log_job_processing"])

    def start_next(self, now: float, wall: float, *, write: bool = True) -> Started | None:
        """Begin the next job that may start now, or return None when none may.

        ``write=False``: the attempt is not written here; the caller writes it ahead of the
        body (see :meth:`start_batch`).
        """
        next_ready = self.queue.next_ready
        kinds = self.kinds
        while True:
            job = next_ready(now)
            if job is None:
                if self._refill():
                    continue
                return None
            entry = kinds(job.name)
            if entry is None:
                self.core.outcomes.fail(job, "NoSuchJob", self.port.unknown(job), now, wall)
                continue
            if (entry.is_async or job.defer) and self.running >= self.capacity:
                self.queue.wait_slot(job)
                continue
            if (job.limits is not None or entry.claims) and not self.limits.admit(job, entry, now):
                continue
            self.port.starting(job, wall)
            self.begin(job, wall, write=write)
            return job, entry

    def _refill(self) -> bool:
        """Queue again as many slot waiters as there are free slots; whether any were.

        A slot frees when an async job ends (the driver's ``slot_freed``), but also when a
        begun ``def`` job ends or a begun job fails: with write-ahead, ``def`` jobs begun in a
        batch hold slots until they run, and an async job that found them taken must not wait
        for an async job that may never come.
        """
        slot_wait = self.queue.slot_wait
        free = self.capacity - self.running
        if not slot_wait or free <= 0 or self.core.stopping:
            return False
        while free > 0 and slot_wait:
            self.queue.make_ready(slot_wait.popleft())
            free -= 1
        return True

    def start_batch(self, now: float, wall: float, room: int) -> list[Started]:
        """Begin up to ``room`` jobs that may start now, without writing their attempts: the
        caller writes them as one batch before their bodies start (write-ahead)."""
        batch: list[Started] = []
        while len(batch) < room:
            started = self.start_next(now, wall, write=False)
            if started is None:
                break
            batch.append(started)
        return batch

    def begin(self, job: JobRecord, wall: float, *, write: bool = True) -> None:
        """An attempt starts: count it and persist it (``write=False``: the caller writes it
        ahead of the body itself). A cron job keeps its instant in ``run_at`` when it starts a
        hair before it, so that its next run follows that one."""
        job.phase = R.RUNNING
        job.status = R.IN_PROGRESS
        job.attempt += 1
        if job.cron is None or wall > job.run_at:
            job.run_at = wall
        self.running += 1
        self.stats["attempts"] += 1
        if self.log_processing and log.isEnabledFor(logging.INFO):  # no fields built for nothing
            log.info(
                "job %s %r started (attempt %d)",
                job.id,
                job.name,
                job.attempt,
                extra=job.log_fields(self.core.name),
            )
        if write:
            self.port.write(job)

    def written(self, job: JobRecord, now: float) -> bool:
        """A begun job's attempt is stored: whether its body starts now. False when it failed
        meanwhile (a poisoned record), or was revoked or cancelled (then it is dropped)."""
        if job.phase != R.RUNNING:
            return False
        if job.revoked or job.cancel_requested:
            self.dropped(job, now)
            return False
        return True

    def dropped(self, job: JobRecord, now: float) -> None:
        """A begun job will not start after all: it was revoked or cancelled while its attempt
        was being written (the attempt stays counted)."""
        self.running -= 1
        if job.permit is not None:
            self.limits.release(job)
        if job.revoked:
            self.core.intake.forget(job)
        else:
            self.core.outcomes.finish_cancelled(job, now)
        self.queue.slot_freed()
