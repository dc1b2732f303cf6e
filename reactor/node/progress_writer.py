"""Stores the running jobs' latest progress in Redis for the dashboard, coalesced per job.

A node keeping its jobs in Redis hands every progress report it accepts to a
:class:`ProgressWriter` (a dictionary update under a lock: nothing on the node's loop waits for
Redis). A daemon thread of the writer's own, started at the first report, writes each job's
latest report at most every :data:`WRITE_EVERY` seconds (the first one
:data:`FIRST_WRITE_AFTER` seconds after the job's first report, so a short job costs nothing),
all due jobs in one pipeline, and deletes a job's key when its attempt ends (see
:mod:`reactor.storage.progress` for the key). A thread rather than a task so that a ``def`` job
holding the node's loop shows its progress too.

Progress stays a hint: a write Redis refuses is logged once and dropped, the next report
replaces it; a key the node could not delete (it died) expires after ``ttl`` seconds.

Not a :class:`~reactor.storage.writer.BatchWriter` (the result and flow stores' writer): that
one runs on the loop, writes all that is pending at once and retries a refused batch until
Redis takes it; this one must run beside a loop a ``def`` job holds, writes each job on its own
schedule, and drops what Redis refuses (a stale report retried is worth less than the next).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Final

from redis.exceptions import RedisError

from reactor.storage.base import Storage
from reactor.storage.client import SyncClient, make_sync_client
from reactor.storage.progress import encode_progress, progress_key
from reactor.storage.redis import RedisStorage
from reactor.storage.redis_layout import safe_url

log = logging.getLogger("reactor.node")

#: Seconds between two writes of one job's progress (the dashboard is about this fresh).
WRITE_EVERY: Final = 1.0
#: Seconds from a job's first report to its first write: a job that ends sooner (most do, where
#: jobs are many) costs Redis nothing.
FIRST_WRITE_AFTER: Final = 0.5
#: The shortest lifetime of a progress key, whatever ``result_ttl`` says.
MIN_TTL: Final = 60

#: One report as the writer keeps it: fraction, note, epoch time, attempt.
Report = tuple[float, str | None, float, int]


class ProgressWriter:
    """Writes the latest progress of ``node``'s running jobs under ``prefix`` in the Redis at
    ``url`` (see the module docstring).

    Args:
        url: the Redis URL of the node's storage.
        prefix: the storage's key prefix.
        node: the node's name (its keys' hash tag).
        ttl: seconds a key outlives its last write when nobody deletes it.
    """

    def __init__(self, url: str, prefix: str, node: str, ttl: float) -> None:
        self.url = url
        self.prefix = prefix
        self.node = node
        self.ttl = max(MIN_TTL, int(ttl))
        #: Redis commands sent (a SET or a DEL each): what the tests bound.
        self.writes = 0
        self._lock = threading.Lock()
        self._latest: dict[str, Report | None] = {}  # job id -> report to write; None: delete
        self._written_at: dict[str, float] = {}  # job id -> monotonic time of its last SET
        self._first_at: dict[str, float] = {}  # job id -> monotonic time of its first report
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: SyncClient | None = None
        self._warned = False

    @classmethod
    def of(cls, storage: Storage, node: str, ttl: float) -> ProgressWriter | None:
        """The writer for ``storage``, or None for a storage the dashboard cannot read
        (memory)."""
        if not isinstance(storage, RedisStorage):
            return None
        return cls(storage.url, storage.prefix, node, ttl)

    def offer(self, job_id: str, attempt: int, fraction: float, note: str | None) -> None:
        """The latest report of ``job_id``'s running attempt (any thread; never waits for
        Redis)."""
        report = (fraction, note, time.time(), attempt)  # encoded by the thread, off the loop
        with self._lock:
            if self._stop.is_set():
                return
            known = self._latest.get(job_id) is not None  # the thread has it timed already
            self._latest[job_id] = report
            if not known and job_id not in self._written_at:
                self._first_at.setdefault(job_id, time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="reactor-progress", daemon=True
                )
                self._thread.start()
        if not known:
            self._wake.set()

    def end(self, job_id: str) -> None:
        """``job_id``'s attempt has ended: its key goes (a report not yet written is dropped)."""
        with self._lock:
            self._first_at.pop(job_id, None)
            if job_id in self._written_at:
                self._latest[job_id] = None
            else:
                self._latest.pop(job_id, None)
                return
        self._wake.set()

    def stop(self) -> None:
        """Delete every key written and end the thread (the node stops: none of its attempts
        runs on, and a job it hands back shows no stale progress)."""
        with self._lock:
            self._stop.set()
            thread = self._thread
            self._latest = dict.fromkeys(self._written_at)
            self._first_at.clear()
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5.0)

    # -- the writer's thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.clear()
            delay = self._flush(time.monotonic())
            if self._stop.is_set():
                self._flush(float("inf"))  # the deletes the stop left
                break
            self._wake.wait(delay)
        if self._client is not None:
            self._client.close()

    def _due(self, now: float) -> tuple[list[tuple[str, Report | None]], float | None]:
        """Take the writes due at ``now`` and the seconds until the next one (None: none)."""
        due: list[tuple[str, Report | None]] = []
        later: float | None = None
        with self._lock:
            for job_id, value in list(self._latest.items()):
                if value is None:  # an end: the key goes now
                    self._written_at.pop(job_id, None)
                elif now < (when := self._due_at(job_id)):
                    later = when - now if later is None else min(later, when - now)
                    continue
                else:  # marked written before the SET, so an end meanwhile deletes it after
                    self._written_at[job_id] = min(now, time.monotonic())
                    self._first_at.pop(job_id, None)
                del self._latest[job_id]
                due.append((job_id, value))
        return due, later

    def _due_at(self, job_id: str) -> float:
        """When ``job_id``'s pending report may be written (monotonic; under the lock)."""
        at = self._written_at.get(job_id)
        if at is not None:
            return at + WRITE_EVERY
        return self._first_at.get(job_id, 0.0) + FIRST_WRITE_AFTER

    def _flush(self, now: float) -> float | None:
        due, later = self._due(now)
        if due:
            self._write(due)
        return later

    def _write(self, due: list[tuple[str, Report | None]]) -> None:
        try:
            if self._client is None:
                self._client = make_sync_client(self.url, timeout=10.0, detect_cluster=True)
            pipe = self._client.pipeline(transaction=False)
            for job_id, value in due:
                key = progress_key(self.prefix, self.node, job_id)
                if value is None:
                    pipe.delete(key)
                else:
                    pipe.set(key, encode_progress(*value), ex=self.ttl)
            self.writes += len(due)
            pipe.execute()
        except (RedisError, OSError) as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot store job progress in %s (%s: %s); the dashboard shows none until "
                    "Redis takes writes again",
                    safe_url(self.url),
                    type(exc).__name__,
                    exc,
                )
