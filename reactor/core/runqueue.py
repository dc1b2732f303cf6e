"""The node's run queue: due jobs in start order, jobs on timers, held jobs and slot waiters.

A due job of priority 0 waits in a plain deque; one with a priority in a heap, so only jobs that
carry a priority pay for it. Jobs of a distributor whose link is not runnable are held until it
is; async jobs that found every slot taken wait in ``slot_wait``. Jobs with a ``fair_key=`` wait
in a :class:`~reactor.core.fairness.FairQueue`, keys taking turns within each priority. Which
job starts is decided by :class:`reactor.core.start.StartRule`, which takes jobs from here.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from typing import TYPE_CHECKING

from reactor.core.fairness import FairQueue
from reactor.core.schedule import SLACK, TimerHeap
from reactor.core.wallclock import at_wall
from reactor.jobs import record as R
from reactor.jobs.record import JobRecord
from reactor.wire import protocol as P

if TYPE_CHECKING:
    from reactor.core.node import NodeCore

log = logging.getLogger("reactor.node")


class RunQueue:
    """Due, waiting, held and slot-waiting jobs of one node (see the module docstring)."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.port = core.port
        self.links = core.links
        self.ready: deque[JobRecord] = deque()  # due jobs of priority 0, in order
        #: Due jobs of another priority, as a heap of (-priority, order, job).
        self.ranked: list[tuple[int, int, JobRecord]] = []
        self._order = itertools.count(1)
        self._front = itertools.count(-1, -1)  # orders of jobs put back at the front
        self.held: deque[JobRecord] = deque()  # due, but their link is not runnable yet
        self.slot_wait: deque[JobRecord] = deque()  # due async jobs waiting for a free slot
        self.fair = FairQueue()  # due jobs with a fair_key, keys taking turns
        self._fair_turn = False  # on a priority tie: whether the fair queue goes next
        self.timers: TimerHeap[JobRecord] = TimerHeap()
        self.armed = float("inf")

    @property
    def empty(self) -> bool:
        """Whether no job is due (ready, ranked or waiting for a slot)."""
        return not self.ready and not self.ranked and not self.slot_wait and not self.fair.size

    def make_ready(self, job: JobRecord, *, front: bool = False) -> None:
        """Queue a due job: higher priority first, FIFO within one (``front``: ahead of its
        priority, for a job that was already next); keys take turns among fair-keyed jobs."""
        if job.limits is not None and job.limits[5] is not None:
            self.fair.push(job, job.limits[5], front=front)
        elif job.priority:
            order = next(self._front) if front else next(self._order)
            heapq.heappush(self.ranked, (-job.priority, order, job))
        elif front:
            self.ready.appendleft(job)
        else:
            self.ready.append(job)

    def release_held(self) -> None:
        """A link became runnable (or went away): held jobs go back to the front."""
        if self.held:
            for job in reversed(self.held):
                self.make_ready(job, front=True)
            self.held.clear()
            self.port.kick()

    def schedule(self, job: JobRecord, due: float, now: float) -> None:
        """Queue ``job`` now (``due`` 0) or on a timer; a stopping node hands it back instead."""
        job.due = due
        core = self.core
        if core.stopping and core.outcomes.handable(job) is not None:
            core.outcomes.hand_back([job], "the node is stopping", now)
            return
        if due:
            job.phase = R.WAITING
            job.timer = self.timers.add(due, job)
            if due < self.armed:
                self.armed = due
                self.port.arm(due)
        else:
            job.phase = R.READY
            if job.priority or job.limits is not None:
                self.make_ready(job)
            else:
                self.ready.append(job)
            self.port.kick()

    def unarm(self, job: JobRecord) -> None:
        """Take a waiting job off its timer."""
        self.timers.cancel(job.timer)
        job.timer = None

    def wall_moved(self, now: float, wall: float) -> int:
        """The wall clock jumped: re-arm every waiting ``run_at=`` and ``cron=`` job on its wall
        instant.

        ``after=``, ``period=`` and retry delays are durations and keep their due times. A job
        whose instant has passed goes through the timer at once (its record is checked first).
        Returns how many jobs were re-armed.
        """
        moved = 0
        for job in self.core.jobs.values():
            if job.phase != R.WAITING or (job.cron is None and not at_wall(job)):
                continue
            self.unarm(job)
            self.schedule(job, now + max(0.0, job.run_at - wall), now)
            moved += 1
        return moved

    def fire_timers(self, now: float, wall: float | None = None) -> None:
        """The armed timer went off: move due jobs on (after checking they were not deleted).

        With ``wall``, a cron or ``run_at=`` job whose instant the wall clock has not reached
        yet (the clock was set back, or the timer fired a hair early: uvloop's timers have
        millisecond granularity and the schedule pops within SLACK) waits the rest on a new
        timer, set SLACK later so it cannot pop early again: such a job never starts before
        its instant.
        """
        self.armed = float("inf")
        due = self.timers.pop_due(now)
        if wall is not None and due:
            early = [j for j in due if j.run_at > wall and (j.cron is not None or at_wall(j))]
            if early:
                due = [j for j in due if j not in early]
                for job in early:
                    job.timer = None
                    self.schedule(job, now + (job.run_at - wall) + SLACK, now)
        nxt = self.timers.earliest()
        if nxt is not None:
            self.armed = nxt
            self.port.arm(nxt)
        if not due:
            return
        for job in due:
            job.timer = None
        alive = self.port.exists(due)
        if alive is not None:
            self.timers_checked(due, alive, now)

    def timers_checked(
        self, jobs: list[JobRecord], alive: list[bool], now: float, lost: list[bool] | None = None
    ) -> None:
        """Storage answered whether the due jobs still exist: a record destroyed on purpose
        cancels its job; one that vanished otherwise (``lost``) fails it with ``JobLost``."""
        outcomes = self.core.outcomes
        for i, (job, exists) in enumerate(zip(jobs, alive, strict=True)):
            if job.phase != R.WAITING or job.revoked:
                continue
            if not exists and lost is not None and lost[i]:
                message = "the job's record vanished from storage without a destroy (evicted?)"
                fields = job.log_fields(self.core.name)
                log.error("job %s (%r): %s", job.id, job.name, message, extra=fields)
                job.failed_at = job.run_at
                job.last_error = f"JobLost: {message}"
                self.core.stats["failed"] += 1
                error = ("JobLost", message, "")
                outcomes.end(job, P.FAILURE, job.args, error, R.FAILED, now, deleted=True)
                continue
            if not exists:
                fields = job.log_fields(self.core.name)
                log.info("job %s (%r) was deleted from storage: not running it", job.id, job.name,
                         extra=fields)  # fmt: skip
                outcomes.finish_cancelled(job, now, deleted=True)
                continue
            job.phase = R.READY
            self.make_ready(job)
        self.port.kick()

    def next_ready(self, now: float) -> JobRecord | None:
        """The next due job in start order, or None: stale and cancelled ones are settled on
        the way, and jobs of a link that is not runnable are held."""
        ready = self.ready
        ranked = self.ranked
        links = self.links
        fair = self.fair
        while True:
            # A ranked job goes first when its priority is above 0 (its key is -priority), or
            # when no plain job is left; without ranked jobs this is the plain deque path.
            if fair.size and self._fair_next():
                job = fair.pop(max(fair.rings))
            elif ranked and (ranked[0][0] < 0 or not ready):
                job = heapq.heappop(ranked)[2]
            elif ready:
                job = ready.popleft()
            else:
                return None
            if job.phase != R.READY or job.revoked:
                continue
            if job.cancel_requested:
                self.core.outcomes.finish_cancelled(job, now)
                continue
            link = links.get(job.distributor)
            if (
                link is not None
                and job.dsession
                and (
                    not link.dsession or (job.dsession == link.dsession and not link.runnable(now))
                )
            ):
                self.held.append(job)
                continue
            return job

    def _fair_next(self) -> bool:
        """Whether the fair queue's job goes before the plain and ranked ones: its priority is
        higher, or equal and it is its turn (they alternate)."""
        best = max(self.fair.rings)
        if self.ranked and (self.ranked[0][0] < 0 or not self.ready):
            other: int | None = -self.ranked[0][0]
        else:
            other = 0 if self.ready else None
        if other is None or best > other:
            return True
        if best < other:
            return False
        self._fair_turn = not self._fair_turn
        return self._fair_turn

    def wait_slot(self, job: JobRecord) -> None:
        """An async job found every slot taken: it starts when one frees (higher priority
        first, FIFO within one; plain jobs with no ranked ones around just append)."""
        slot_wait = self.slot_wait
        if job.priority or (slot_wait and slot_wait[-1].priority < 0):
            i = len(slot_wait)
            while i and slot_wait[i - 1].priority < job.priority:
                i -= 1
            slot_wait.insert(i, job)
        else:
            slot_wait.append(job)

    def slot_freed(self) -> None:
        """A slot is free: the oldest job waiting for one goes first."""
        if self.slot_wait and not self.core.stopping:
            self.make_ready(self.slot_wait.popleft(), front=True)
            self.port.kick()

    def take_due(self) -> list[JobRecord]:
        """Empty the queue of due jobs, in start order (for a hand-back); see :meth:`requeue`."""
        ranked = [entry[2] for entry in sorted(self.ranked)]
        fair = self.fair.take_all()
        due = [j for j in (*ranked, *self.ready, *fair, *self.slot_wait) if j.phase == R.READY]
        self.ready.clear()
        self.ranked.clear()
        self.slot_wait.clear()
        return due

    def requeue(self, jobs: list[JobRecord]) -> None:
        """Queue again the jobs of :meth:`take_due` that were not handed back."""
        for job in jobs:
            if job.phase == R.READY:
                self.make_ready(job)

    def prune(self) -> None:
        """Drop every queued job that is no longer due (the node stops: they were handed back)."""
        self.ready = deque(j for j in self.ready if j.phase == R.READY)
        for job in self.fair.take_all():
            if job.phase == R.READY:
                self.make_ready(job)
        self.ranked[:] = [entry for entry in self.ranked if entry[2].phase == R.READY]
        heapq.heapify(self.ranked)
        self.held = deque(j for j in self.held if j.phase == R.READY)
        self.slot_wait = deque(j for j in self.slot_wait if j.phase == R.READY)
