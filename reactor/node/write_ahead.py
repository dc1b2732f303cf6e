"""Write-ahead attempts: a durable node writes each attempt before the job's body starts.

With Redis storage, a job taken from the ready queue is begun at once (its attempt number and
``in progress`` are queued for storage), but its body starts only once that write is in Redis:
a crash during the body then counts as an attempt, and a job that kills its node fails after
``max_attempt`` crashes instead of crash-looping it (DESIGN §3 "Durable nodes"). Jobs started
together share one write: a batch is everything ready (up to :data:`MAX_AHEAD` begun and not
yet run), and one future per batch tells when it is written. Memory storage has nothing to
wait for and never goes through here.
"""

from __future__ import annotations

import logging
import time
from asyncio import Future
from collections import deque
from collections.abc import Callable

from reactor.core.node import NodeCore
from reactor.errors import PoisonedRecordsError
from reactor.jobs import record as R
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobRegistry
from reactor.storage import Storage

log = logging.getLogger("reactor.node")

#: Most jobs begun (attempt counted and being written) but not started yet. Bounds the attempts
#: a crash charges to jobs that never ran, and the jobs a blocking ``def`` job holds up.
MAX_AHEAD = 512


class WriteAhead:
    """Jobs between "begun" and "body started": their attempt is being written.

    Args:
        core: the node's core (its ready queue, ``begin``, ``fail``, ``dropped``).
        storage: a durable storage (its :meth:`~reactor.storage.Storage.write_ahead`).
        registry: the node's jobs (unknown names and capacity are settled before the write).
        capacity: how many ``async``/deferred jobs may run at once.
        kick: asks the driver to run the written jobs.
        unknown: the error message for a job name the node does not know.
    """

    def __init__(
        self,
        core: NodeCore,
        storage: Storage,
        registry: JobRegistry,
        *,
        capacity: int,
        kick: Callable[[], None],
        unknown: Callable[[JobRecord], str],
    ) -> None:
        self.core = core
        self.storage = storage
        self.registry = registry
        self.capacity = capacity
        self.kick = kick
        self.unknown = unknown
        #: Jobs whose attempt is written, in start order: the driver runs these.
        self.written: deque[JobRecord] = deque()
        self.in_flight = 0  # begun, attempt not written yet

    def collect(self, now: float, wall: float) -> None:
        """Begin every ready job there is room for and write their attempts as one batch."""
        core = self.core
        room = MAX_AHEAD - self.in_flight - len(self.written)
        batch: list[JobRecord] = []
        while room > 0:
            job = core.next_ready(now)
            if job is None:
                break
            entry = self.registry.get(job.name)
            if entry is None:
                core.fail(job, "NoSuchJob", self.unknown(job), now, wall)
                continue
            if (entry.is_async or job.defer) and core.running >= self.capacity:
                core.wait_slot(job)
                continue
            core.begin(job, wall, write=False)  # written below, as one batch
            batch.append(job)
            room -= 1
        if not batch:
            return
        future = self.storage.write_ahead(batch)
        if future is None:
            self.written.extend(batch)
            return
        self.in_flight += len(batch)
        future.add_done_callback(lambda done: self._written(batch, done))

    def _written(self, batch: list[JobRecord], done: Future[None]) -> None:
        self.in_flight -= len(batch)
        failed: dict[str, str] = {}
        if done.cancelled():
            return  # the storage closed: the node is going away
        error = done.exception()
        if isinstance(error, PoisonedRecordsError):
            failed = error.failed
        elif error is not None:
            log.error("writing the attempts of %d jobs failed: %s", len(batch), error)
            return  # storage closed under them: the node is going away
        for job in batch:
            reason = failed.get(job.id)
            if reason is not None and job.phase == R.RUNNING:
                message = f"storage cannot write this job's attempt: {reason}"
                self.core.fail(job, "PoisonedRecord", message, time.monotonic(), time.time())
                continue
            self.written.append(job)
        self.kick()

    def next_written(self, now: float) -> JobRecord | None:
        """The next begun job whose attempt is stored and that should start now, or None."""
        written = self.written
        while written:
            job = written.popleft()
            if job.phase != R.RUNNING:
                continue  # failed meanwhile (its record is poisoned)
            if job.revoked or job.cancel_requested:
                self.core.dropped(job, now)
                continue
            return job
        return None
