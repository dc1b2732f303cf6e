"""Write-ahead attempts: a durable node writes each attempt before the job's body starts.

With Redis storage, a job taken from the ready queue is begun at once (its attempt number and
``in progress`` are queued for storage), but its body starts only once that write is in Redis:
a crash during the body then counts as an attempt, and a job that kills its node fails after
``max_attempt`` crashes instead of crash-looping it (DESIGN §3 "Durable nodes"). Jobs started
together share one write: a batch is every job the core lets start (up to :data:`MAX_AHEAD`
begun and not yet run, see :meth:`NodeCore.start_batch`), and one future per batch tells when
it is written. Memory storage has nothing to
wait for and never goes through here.
"""

from __future__ import annotations

import logging
import time
from asyncio import Future
from collections import deque
from collections.abc import Callable

from reactor.core.node import NodeCore
from reactor.core.start import Started
from reactor.errors import PoisonedRecordsError
from reactor.jobs import record as R
from reactor.storage import Storage

log = logging.getLogger("reactor.node")

#: Most jobs begun (attempt counted and being written) but not started yet. Bounds the attempts
#: a crash charges to jobs that never ran, and the jobs a blocking ``def`` job holds up.
MAX_AHEAD = 512


class WriteAhead:
    """Jobs between "begun" and "body started": their attempt is being written.

    Args:
        core: the node's core (``start_batch`` decides which jobs start, ``written`` whether a
            written one still does, ``fail`` ends a poisoned one).
        storage: a durable storage (its :meth:`~reactor.storage.Storage.write_ahead`).
        kick: asks the driver to run the written jobs.
    """

    def __init__(self, core: NodeCore, storage: Storage, *, kick: Callable[[], None]) -> None:
        self.core = core
        self.storage = storage
        self.kick = kick
        #: Jobs whose attempt is written, with their entries, in start order: the driver runs
        #: these.
        self.written: deque[Started] = deque()
        self.in_flight = 0  # begun, attempt not written yet

    def collect(self, now: float, wall: float) -> None:
        """Begin every job that may start and there is room for; write their attempts as one
        batch."""
        room = MAX_AHEAD - self.in_flight - len(self.written)
        batch = self.core.start_batch(now, wall, room) if room > 0 else []
        if not batch:
            return
        future = self.storage.write_ahead([job for job, _ in batch])
        if future is None:
            self.written.extend(batch)
            return
        self.in_flight += len(batch)
        future.add_done_callback(lambda done: self._written(batch, done))

    def _written(self, batch: list[Started], done: Future[None]) -> None:
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
        for started in batch:
            job = started[0]
            reason = failed.get(job.id)
            if reason is not None and job.phase == R.RUNNING:
                message = f"storage cannot write this job's attempt: {reason}"
                self.core.fail(job, "PoisonedRecord", message, time.monotonic(), time.time())
                continue
            self.written.append(started)
        self.kick()

    def next_written(self, now: float) -> Started | None:
        """The next begun job whose attempt is stored and that still starts, or None."""
        written = self.written
        may_start = self.core.written
        while written:
            started = written.popleft()
            if may_start(started[0], now):
                return started
        return None
