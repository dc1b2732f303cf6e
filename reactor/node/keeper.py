"""A node's storage interplay beyond plain writes: storing received jobs, checking that due jobs
still exist, poisoned records, an outage and its end, jobs the monitor retries, and the final
outcomes kept in the result store when their distributor may never hear of them.

The node's port methods ``store`` and ``exists`` come here when storage cannot answer at once;
the answers go back to the core from tasks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from reactor.core.node import NodeCore
from reactor.errors import PoisonedRecordsError, StorageUnavailableError
from reactor.jobs import record as R
from reactor.jobs.record import JobRecord
from reactor.ops.metrics import Metrics
from reactor.storage import Storage
from reactor.storage.results import ResultWriter
from reactor.wire import protocol as P

log = logging.getLogger("reactor.node")

#: Seconds one wait for retried jobs lasts (a retry still starts at once: the wait is a BLPOP).
RETRY_WAIT = 5.0


class StorageKeeper:
    """Storage answers that come later, fed back to the core (see the module docstring).

    Args:
        name: the node's name (for logs).
        storage: the node's started storage.
        core: the node's core.
        metrics: counts the records received.
        spawn: runs a coroutine as one of the node's tasks.
        serving: whether the node still serves (the retried-jobs loop ends when it does not).
        result_store: the Redis URL of the result store (``config["result_store"]``), or None.
        result_ttl: seconds a kept outcome lasts there.
    """

    def __init__(
        self,
        name: str,
        storage: Storage,
        core: NodeCore,
        *,
        metrics: Metrics,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        serving: Callable[[], bool],
        result_store: str | None = None,
        result_ttl: float = 86400.0,
    ) -> None:
        self.results: ResultWriter | None = None
        if result_store:
            self.results = ResultWriter(result_store, ttl=result_ttl, only_new=True)
            core.keeps_results = True
        self.name = name
        self.storage = storage
        self.core = core
        self.metrics = metrics
        self.spawn = spawn
        self.serving = serving

    def keep_result(self, name: str, message: list[Any]) -> None:
        """Keep a final outcome its distributor may never hear of (the core's port)."""
        if self.results is not None:
            self.results.record(message[P.FEEDBACK_ID], name, P.Feedback(*message[1:]))

    async def close(self) -> None:
        """Write the kept outcomes still pending, then close the result store's client."""
        if self.results is not None:
            await self.results.close()

    def store(self, link: str, records: list[JobRecord]) -> bool:
        """Persist new records; False: the answer comes from a task."""
        self.metrics.records_received(records)
        if self.storage.add_nowait(records):
            return True
        self.spawn(self._store(link, records))
        return False

    async def _store(self, link: str, records: list[JobRecord]) -> None:
        core = self.core
        try:
            await self.storage.add(records)
        except StorageUnavailableError as exc:
            core.store_failed(link, records, f"storage unavailable: {exc}")
            self.storage_down(exc)
            return
        except PoisonedRecordsError as exc:  # the others are stored; these are refused
            bad = [r for r in records if r.id in exc.failed]
            core.store_failed(link, bad, f"storage could not write the job: {exc}")
            records = [r for r in records if r.id not in exc.failed]
        core.stored(link, records, time.monotonic())

    def on_poisoned(self, record: JobRecord | None, job_id: str, reason: str) -> None:
        """Storage could not write a job's record (its key holds other data): the job fails
        with error feedback instead of blocking every write after it."""
        core = self.core
        if record is None or core.jobs.get(job_id) is not record:
            return  # a corrupt record found at resume: quarantined and reported by storage
        if record.phase == R.DONE:
            return  # failed already (its attempt could not be written: see WriteAhead)
        if record.phase == R.RUNNING:
            record.cancel_requested = True  # its run ends; nothing can be stored for it
            return
        message = f"storage cannot write this job: {reason}"
        core.fail(record, "PoisonedRecord", message, time.monotonic(), time.time())

    def storage_down(self, exc: Exception) -> None:
        """Storage is unreachable: take no jobs until it is back."""
        core = self.core
        if not core.storage_ok:
            return
        log.error(
            "node %s: storage unavailable (%s); not taking jobs until it is back", self.name, exc
        )
        core.storage_ok = False
        core.announce(time.monotonic())
        self.spawn(self._await_storage())

    async def _await_storage(self) -> None:
        await self.storage.wait_available()
        log.info("node %s: storage is back; taking jobs again", self.name)
        self.core.storage_ok = True
        self.core.announce(time.monotonic())

    async def take_retried(self) -> None:
        """Run again the jobs the monitor retries (``reactor monitor retry``), as they come."""
        storage = self.storage
        while self.serving():
            try:
                records = await storage.take_retried(RETRY_WAIT)
            except StorageUnavailableError:
                await storage.wait_available()
                continue
            if records:
                log.info(
                    "node %s: running %d jobs again, as the monitor asked",
                    self.name,
                    len(records),
                    extra={"node": self.name},
                )
                self.core.resume(records, time.monotonic(), time.time())

    def exists(self, records: list[JobRecord]) -> list[bool] | None:
        """Whether records still exist, now or (None) from a task."""
        alive = self.storage.exists_nowait(records)
        if alive is None:
            self.spawn(self._check(records))
        return alive

    async def _check(self, records: list[JobRecord]) -> None:
        storage = self.storage
        lost: list[bool] | None = None
        try:
            alive = await storage.exists(records)
            missing = [r for r, ok in zip(records, alive, strict=True) if not ok]
            if missing:  # destroyed on purpose (a tombstone), or lost (eviction, FLUSHDB)?
                tombstoned = await storage.tombstoned(missing)
                destroyed = dict(zip((r.id for r in missing), tombstoned, strict=True))
                lost = [
                    not ok and not destroyed[r.id] for r, ok in zip(records, alive, strict=True)
                ]
        except StorageUnavailableError:
            alive = [True] * len(records)  # cannot tell: run rather than lose a job
        self.core.timers_checked(records, alive, time.monotonic(), lost)
