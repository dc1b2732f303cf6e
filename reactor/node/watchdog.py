"""Keeps a node honest while a blocking ``def`` job holds its event loop.

The loop thread owns the sockets and the node core and holds :attr:`Watchdog.lock` whenever it
may touch them; it lets go only while a ``def`` job body runs, which touches neither. The
watchdog thread then takes the lock (a full memory barrier, so the objects may change threads
safely) to

* send heartbeats, so the node is not declared gone while one job holds the loop;
* hand the jobs queued behind the blocking one back to their distributors after
  ``hand_back_after`` seconds, and say the node takes no jobs, so a short job never waits behind
  a long one while another node has room (issue 9, case 7);
* from then on, read the sockets every :data:`CHECK_EVERY`: jobs sent before the distributors
  heard that the node takes none are refused at once, so they too go to a node with room,
  whenever they arrive during the block (issue 18);
* name the job in a warning once it has held the loop ``slow_job_warning`` seconds, and once it
  is past its own ``timeout`` (it cannot be interrupted: its attempt fails when it returns).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from reactor.jobs.record import JobRecord

log = logging.getLogger("reactor.node")

#: How often the watchdog looks at the loop.
CHECK_EVERY = 0.05


class Watchdog:
    """A daemon thread acting for a node whose loop is held by a blocking job.

    Args:
        interval: heartbeat interval in seconds.
        beat: sends heartbeats (called with the lock held).
        hand_back: hands queued jobs back, returning how many (called with the lock held).
        flush: sends what ``beat``, ``hand_back`` or ``read`` queued, from this thread, then
            asks the loop to look at its sockets again once it is free.
        read: reads the sockets while the loop is held after a hand-back (lock held).
        hand_back_after: seconds a job may hold the loop before queued jobs are handed back.
        slow_warning: seconds a job may hold the loop before it is named in a warning.
    """

    def __init__(
        self,
        *,
        interval: float,
        beat: Callable[[float], None],
        hand_back: Callable[[float], int],
        flush: Callable[[], None],
        read: Callable[[float], None],
        hand_back_after: float,
        slow_warning: float,
    ) -> None:
        self.lock = threading.Lock()
        self.loop_beat = time.monotonic()  # the loop's own last heartbeat
        self.job_since = 0.0  # when the running def job started (0: none runs)
        self.job: JobRecord | None = None
        self.job_limit: float | None = None  # the running def job's timeout (None: no limit)
        self.handed_back = False  # this job's queue was handed back
        self._interval = interval
        self._beat = beat
        self._hand_back = hand_back
        self._flush = flush
        self._read = read
        self._hand_back_after = hand_back_after
        self._slow_warning = slow_warning
        self._warned_since = 0.0
        self._limit_warned_since = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reactor-watchdog", daemon=True)

    def start(self) -> None:
        """Take the lock for the loop thread and start watching."""
        self.lock.acquire()
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (the loop thread still holds the lock)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def job_started(self, now: float, job: JobRecord, limit: float | None = None) -> None:
        """The loop is about to run a def job body (and release the lock)."""
        self.job_since = now
        self.job = job
        self.job_limit = limit

    def job_ended(self) -> bool:
        """The body returned (the loop holds the lock again); True if its queue was handed back."""
        self.job_since = 0.0
        handed, self.handed_back = self.handed_back, False
        return handed

    def _run(self) -> None:
        while not self._stop.wait(CHECK_EVERY):
            now = time.monotonic()
            since, job = self.job_since, self.job
            held = now - since if since else 0.0
            limit = self.job_limit
            if since and limit is not None and held > limit and self._limit_warned_since != since:
                self._limit_warned_since = since
                log.warning(
                    "job %s (%r) is past its %gs timeout (running %.1fs); a def job on the "
                    "node's loop cannot be interrupted: its attempt fails with "
                    "TimeLimitExceeded when it returns. Use async def or defer=True",
                    job.id if job else "?",
                    job.name if job else "?",
                    limit,
                    held,
                )
            if since and held > self._slow_warning and self._warned_since != since:
                self._warned_since = since
                log.warning(
                    "job %s (%r) has held the node's loop for %.1fs; a def job blocks every "
                    "other job on its node: use async def or defer=True",
                    job.id if job else "?",
                    job.name if job else "?",
                    held,
                )
            must_beat = now - self.loop_beat >= 1.5 * self._interval
            must_hand = since and held > self._hand_back_after and not self.handed_back
            must_read = since and self.handed_back
            if not (must_beat or must_hand or must_read):
                continue
            if not self.lock.acquire(timeout=CHECK_EVERY):
                continue  # the loop is busy, but not in a job: it will do this itself
            try:
                if self._stop.is_set():
                    return
                if must_hand and self.job_since == since:
                    count = self._hand_back(now)
                    self.handed_back = True
                    if count:
                        log.warning(
                            "job %s (%r) holds the node's loop: handed %d queued jobs back",
                            job.id if job else "?",
                            job.name if job else "?",
                            count,
                        )
                if must_read and self.job_since == since:
                    self._read(now)
                if must_beat:
                    self._beat(now)
                    self.loop_beat = now
                self._flush()
            finally:
                self.lock.release()
