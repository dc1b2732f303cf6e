"""A node's storage interplay beyond plain writes: storing received jobs, checking that due jobs
still exist, poisoned records, an outage and its end, jobs the monitor retries, and the final
outcomes kept in the result store when their distributor may never hear of them, and the
pruning of kept records by age and count (:class:`Pruner`).

The node's port methods ``store`` and ``exists`` come here when storage cannot answer at once;
the answers go back to the core from tasks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from reactor.core.node import NodeCore
from reactor.errors import PoisonedRecordsError, StorageUnavailableError
from reactor.jobs import record as R
from reactor.jobs.record import FINISHED, JobRecord
from reactor.ops.metrics import Metrics
from reactor.storage import Storage
from reactor.storage.base import Pruned
from reactor.storage.limits import RedisGate
from reactor.storage.results import ResultWriter
from reactor.wire import protocol as P

log = logging.getLogger("reactor.node")

#: Seconds one wait for retried jobs lasts (a retry still starts at once: the wait is a BLPOP).
RETRY_WAIT = 5.0
#: Seconds between a record kept and the count check it triggers: records kept in a burst are
#: pruned in one pass, not one pass each.
COUNT_DELAY: Final = 0.5
#: Seconds before a pass is tried again after it failed (storage unavailable).
RETRY_DELAY: Final = 5.0
#: The shortest wait the timer is armed for (a record just past its expiry).
MIN_DELAY: Final = 0.05


class Pruner:
    """Prunes one node's kept records (complete, failed, cancelled) older than
    ``kept_jobs_ttl`` or beyond ``kept_jobs_max`` per status, on a timer.

    No polling loop and no scan: storage keeps a per-status index ordered by finish time
    (:meth:`~reactor.storage.Storage.prune`), and the timer is armed for the moment the oldest
    kept record expires, or shortly after new records are kept when a count limit applies.
    Unfinished jobs are never in the index, so they are never touched.

    Args:
        name: the node's name (for logs).
        storage: the node's started storage; the pruner sets its ``on_kept`` hook.
        ttl: ``config["kept_jobs_ttl"]``: seconds a kept record lives (None: forever).
        most: ``config["kept_jobs_max"]``: records kept per status (None: no limit).
        metrics: counts what was removed (``reactor_jobs_pruned_total``).
        spawn: runs a coroutine as one of the node's tasks (cancelled when the node closes).
    """

    def __init__(
        self,
        name: str,
        storage: Storage,
        *,
        ttl: float | None,
        most: int | None,
        metrics: Metrics,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.name = name
        self.storage = storage
        self.ttl = ttl
        self.most = most
        self.metrics = metrics
        self.spawn = spawn
        self._handle: asyncio.TimerHandle | None = None
        self._due = float("inf")  # loop time the armed timer fires at
        self._running = False
        self._kept_since = False  # records were kept since the current pass began
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Passes run so far (tests and benchmarks).
        self.passes = 0

    def start(self) -> None:
        """Hook into storage and run a first pass at once (records kept before a restart)."""
        self._loop = asyncio.get_running_loop()
        self.storage.on_kept = self.kept
        self._arm(0.0)

    def close(self) -> None:
        """Disarm the timer and unhook from storage (a running pass is one of the node's tasks,
        cancelled with them)."""
        if self.storage.on_kept == self.kept:
            self.storage.on_kept = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None

    def kept(self, status: str) -> None:
        """Storage kept a finished record (its ``on_kept`` hook): arm the timer if needed."""
        if self._running:
            self._kept_since = True
        elif self.most is not None:
            self._arm(COUNT_DELAY)
        elif self.ttl is not None:
            self._arm(self.ttl)  # nothing older is armed for, or the timer would be sooner

    def _arm(self, delay: float) -> None:
        """Fire a pass in ``delay`` seconds, unless one is armed sooner already."""
        loop = self._loop
        if loop is None:
            return
        due = loop.time() + delay
        if self._handle is not None:
            if self._due <= due:
                return
            self._handle.cancel()
        self._due = due
        self._handle = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._due = float("inf")
        if not self._running:
            self.spawn(self.run())

    async def run(self) -> dict[str, int]:
        """One pass over every final status; the timer is armed again for the next one.

        Returns:
            How many records of each status were removed.
        """
        self._running, self._kept_since = True, False
        removed: dict[str, int] = {}
        next_in: float | None = None
        try:
            for status in FINISHED:
                count, wait = await self._prune(status)
                removed[status] = count
                if wait is not None:
                    next_in = wait if next_in is None else min(next_in, wait)
        except Exception as exc:  # storage down, or a broken index key: never stop pruning
            log.warning(
                "node %s: pruning kept records failed (%s: %s); trying again in %.0fs",
                self.name, type(exc).__name__, exc, RETRY_DELAY,
            )  # fmt: skip
            next_in = RETRY_DELAY
        finally:
            self._running = False
            self.passes += 1
        if self._kept_since:  # kept during the pass: maybe not in what it read
            soon = COUNT_DELAY if self.most is not None or self.ttl is None else self.ttl
            next_in = soon if next_in is None else min(next_in, soon)
        if next_in is not None:
            self._arm(max(MIN_DELAY, next_in))
        return removed

    async def _prune(self, status: str) -> tuple[int, float | None]:
        """Prune one status by age, then by count; ``(removed, seconds until the next pass)``."""
        found: list[Pruned] = []
        if self.ttl is not None:
            found.append(await self.storage.prune(status, before=time.time() - self.ttl))
        if self.most is not None:
            found.append(await self.storage.prune(status, keep_last=self.most))
        count = sum(len(p.removed) for p in found)
        if count:
            self.metrics.jobs_pruned(status, count)
            log.info(
                "node %s: pruned %d kept %s records (kept_jobs_ttl=%s, kept_jobs_max=%s)",
                self.name,
                count,
                status,
                self.ttl,
                self.most,
            )
        last = found[-1]
        wait: float | None = None
        if self.ttl is not None and last.oldest is not None:
            wait = last.oldest + self.ttl - time.time()
        if self.most is not None and last.left > self.most:
            wait = COUNT_DELAY  # records indexed during the pass: count again soon
        return count, wait


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
        kept_ttl: ``config["kept_jobs_ttl"]``: seconds a kept record lives (None: forever).
        kept_max: ``config["kept_jobs_max"]``: kept records per status (None: no limit).
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
        kept_ttl: float | None = None,
        kept_max: int | None = None,
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
        self.pruner: Pruner | None = None
        if kept_ttl is not None or kept_max is not None:
            self.pruner = Pruner(
                name, storage, ttl=kept_ttl, most=kept_max, metrics=metrics, spawn=spawn
            )
            self.pruner.start()

    def keep_result(self, name: str, message: list[Any]) -> None:
        """Keep a final outcome its distributor may never hear of (the core's port)."""
        if self.results is not None:
            self.results.record(message[P.FEEDBACK_ID], name, P.Feedback(*message[1:]))

    async def close(self) -> None:
        """Stop pruning; write the kept outcomes still pending, then close the result store."""
        if self.pruner is not None:
            self.pruner.close()
        if self.results is not None:
            await self.results.close()
        if isinstance(self.core.limits.gate, RedisGate):
            await self.core.limits.gate.close()

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
