"""The batching background writer of the result store and the durable flow store: what they
keep in memory until Redis takes it, written in batches by a task of its own, retried through
an outage, flushed at close.

A store hands it writes with :meth:`BatchWriter.put` (on one loop; nothing waits for Redis) and
a coroutine that writes one batch. The writer's task, started at the first put, hands that
coroutine everything pending at once; a batch Redis refuses goes back in front of whatever came
meanwhile (so writes keep their order) and is tried again after a jittered exponential backoff
(at most :data:`BACKOFF_CAP` seconds), however long the outage lasts. :meth:`BatchWriter.close`
waits a bounded time for what is pending; what is still not written then (pending, or in a
batch the close interrupted) is logged as an ERROR with its count and kept, so a writer put to
again tries it once more: nothing accepted goes without a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, Generic, TypeVar

from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisClusterException, RedisError

#: What a write to Redis raises when Redis cannot take it now (the writer retries these).
REDIS_FAILURES: Final = (RedisError, RedisClusterException, OSError)
#: The longest wait between two tries of a refused batch, and the first one's scale (seconds).
BACKOFF_CAP: Final = 5.0
BACKOFF_BASE: Final = 0.1

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BatchWriter(Generic[K, V]):
    """Writes what a store puts, in batches, on a task of its own (made and used on one loop).

    Writes are keyed: a key put again while its write is pending replaces the value in its
    place (the result store's latest outcome of a job); a store that wants every write kept
    gives each a key of its own (the flow store's sequence numbers).

    Args:
        write: writes one batch (in put order); raises one of :data:`REDIS_FAILURES` when
            Redis cannot take it now.
        what: what the writes are, for the log ("job results").
        where: where they go, for the log (a URL without its password).
        log: the store's logger.
        limit: the most writes kept pending; past it the oldest is dropped (counted in
            :attr:`dropped`, logged). None: no limit.
        sleep: waits between two tries (a test's fake clock).
        backoff: seconds to wait after the n-th failure in a row.
    """

    def __init__(
        self,
        write: Callable[[dict[K, V]], Awaitable[None]],
        *,
        what: str,
        where: str,
        log: logging.Logger,
        limit: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff: Callable[[int], float] | None = None,
    ) -> None:
        self._write = write
        self._what = what
        self._where = where
        self._log = log
        self._limit = limit
        self._sleep = sleep
        self._backoff = backoff or ExponentialWithJitterBackoff(BACKOFF_CAP, BACKOFF_BASE).compute
        self._pending: dict[K, V] = {}
        self._inflight: dict[K, V] = {}  # the batch being written
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None  # set when every write put is written
        self._task: asyncio.Task[None] | None = None
        #: Writes made; and dropped past ``limit`` (Redis unreachable too long).
        self.written = 0
        self.dropped = 0
        #: Batches refused in a row (0 once one is written).
        self.failures = 0

    @property
    def unwritten(self) -> int:
        """Writes accepted and not yet made (pending, or in the batch being written)."""
        return len(self._pending) + len(self._inflight)

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key`` until the writer's task writes it (starts the task)."""
        full = self._limit is not None and len(self._pending) >= self._limit
        if full and key not in self._pending:
            self._drop_oldest()
        self._pending[key] = value
        if self._task is None:
            self._wake, self._idle = asyncio.Event(), asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        assert self._wake is not None and self._idle is not None
        self._idle.clear()
        self._wake.set()

    def _drop_oldest(self) -> None:
        """Make room past ``limit``: the oldest pending write goes, counted and logged."""
        self._pending.pop(next(iter(self._pending)))
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 10_000 == 0:
            self._log.error("%d %s dropped: more than %s wait for %s", self.dropped, self._what,
                            self._limit, self._where)  # fmt: skip

    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            if not batch:
                self._idle.set()
                continue
            self._inflight = batch  # a close that cancels the write keeps it
            try:
                await self._write(batch)
            except REDIS_FAILURES as exc:
                self._inflight = {}
                self._refused(batch, exc)
                await self._sleep(self._backoff(self.failures))
                continue
            self._inflight = {}
            self.failures = 0
            self.written += len(batch)
            if not self._pending:
                self._idle.set()

    def _refused(self, batch: dict[K, V], exc: Exception) -> None:
        """Put a refused batch back in front of what came since (a newer value of a key wins)
        and wake the task for its next try."""
        assert self._wake is not None
        self.failures += 1
        if self.failures == 1 or self.failures % 10 == 0:
            self._log.warning("cannot write %d %s to %s (%s); retrying", len(batch), self._what,
                              self._where, exc)  # fmt: skip
        self._pending = {**batch, **self._pending}
        self._wake.set()

    async def close(self, timeout: float = 5.0) -> int:
        """Write what is pending (waiting at most ``timeout`` seconds), then end the task.

        Returns:
            How many writes were not made (logged as an ERROR; kept for a later put's task).
        """
        task = self._task
        if task is None:
            return self.unwritten
        assert self._idle is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # cleared only now: a put while the close waits joins this task, not a second one
        self._task = None
        self._pending = {**self._inflight, **self._pending}
        self._inflight = {}
        if self._pending:
            self._log.error("%d %s were not written to %s before it stopped",
                            len(self._pending), self._what, self._where)  # fmt: skip
        return len(self._pending)
