"""The node's delivery logic: receipt, fencing, scheduling, outcomes, hand-back and sync.

:class:`NodeCore` holds the node's job records and its standing with each distributor
(:class:`~reactor.core.link.LinkState`). It is fed messages, storage results, timer ticks and
finished attempts, and acts through a :class:`NodePort` (send, store, write, arm a timer, run).
Every job is keyed by (id, assignment number): a stale copy is dropped when the distributor says
so, a newer assignment of a job already held is adopted, and feedback is kept and re-sent until
acknowledged. Jobs of a distributor start only while the link is runnable (see LinkState).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from reactor.config import Config
from reactor.core.lifecycle import (
    Next,
    RetryPolicy,
    after_attempt,
    args_or_empty,
    cron_problem,
    error_triple,
)
from reactor.core.link import SYNC_CHUNK, LinkState
from reactor.core.schedule import TimerHeap
from reactor.core.wallclock import at_wall
from reactor.jobs import record as R
from reactor.jobs.outcome import Attempt
from reactor.jobs.record import JobRecord
from reactor.wire import protocol as P

log = logging.getLogger("reactor.node")
#: Characters of a failed attempt's traceback kept in its record's ``last_error`` (the tail).
TRACEBACK_KEPT = 8192

#: A cron timer that fires more than this many seconds before its wall-clock instant waits more.
_EARLY = 0.001

_RETENTION = {
    R.COMPLETE: "remove_done_jobs",
    R.CANCELLED: "remove_cancelled_jobs",
    R.FAILED: "remove_failed_jobs",
}


class NodePort(Protocol):
    """What the core asks of its driver."""

    def send(self, link: str, message: P.Message | list[Any]) -> None:
        """Queue a message to the distributor ``link`` (``host:port``)."""

    def store(self, link: str, records: list[JobRecord]) -> bool:
        """Persist new records; True if done already, else the driver calls back later."""

    def write(self, record: JobRecord) -> None:
        """Persist the record's current state (written behind, in order)."""

    def remove(self, record: JobRecord) -> None:
        """Forget the record in storage."""

    def exists(self, records: list[JobRecord]) -> list[bool] | None:
        """Whether each record is still stored, or None when the answer comes later."""

    def arm(self, due: float) -> None:
        """Wake the core at monotonic time ``due`` (the earliest job timer changed)."""

    def kick(self) -> None:
        """Jobs are ready to run."""

    def refused(self, link: str, kind: str, reason: str) -> None:
        """A distributor refused this node (name taken, protocol mismatch)."""


class NodeCore:
    """A node's jobs and its protocol with its distributors (no I/O; see the module docstring)."""

    def __init__(
        self,
        port: NodePort,
        *,
        name: str,
        session: str,
        links: list[str],
        config: Config,
        capacity: int,
        job_names: list[str],
        durable: bool,
        where: str,
        policies: Mapping[str, RetryPolicy] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.port = port
        self.name = name
        self.session = session
        self.config = config
        self.capacity = capacity
        self.job_names = job_names
        self.durable = durable
        self.where = where
        self.interval = float(config["heartbeat_interval"])
        self.timeout = float(config["heartbeat_timeout"])
        self.rto = 2 * self.interval
        self.max_attempt = int(config["max_attempt"])
        self.retry_multiplier = float(config["retry_multiplier"])
        #: Each job's retry policy by name (from its ``@job``); others get the node's settings.
        self.policies = dict(policies or {})
        self.default_policy = RetryPolicy.of(
            None, max_attempt=self.max_attempt, retry_multiplier=self.retry_multiplier
        )
        self.rng = rng  # the jitter source (None: the random module's)
        self.links = {key: LinkState(key) for key in links}
        self.jobs: dict[str, JobRecord] = {}
        self.ready: deque[JobRecord] = deque()  # due jobs of priority 0, in order
        # Due jobs of another priority, as a heap of (-priority, order, job): only jobs that
        # carry a priority pay for it, the plain deque stays the usual path (see next_ready).
        self.ranked: list[tuple[int, int, JobRecord]] = []
        self._order = itertools.count(1)
        self._front = itertools.count(-1, -1)  # orders of jobs put back at the front
        self.held: deque[JobRecord] = deque()  # due, but their link is not runnable yet
        self.slot_wait: deque[JobRecord] = deque()  # due async jobs waiting for a free slot
        self.timers: TimerHeap[JobRecord] = TimerHeap()
        self._armed = float("inf")
        self.running = 0
        self.started = False
        self.stopping = False
        self.storage_ok = True
        self.blocked = False
        self.stats = {"received": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "attempts": 0}

    @property
    def accepting(self) -> bool:
        """Whether the node takes new jobs."""
        return self.started and self.storage_ok and not self.stopping and not self.blocked

    @property
    def idle(self) -> bool:
        """Whether no job is ready or running."""
        return not self.ready and not self.ranked and not self.running and not self.slot_wait

    # -- links ------------------------------------------------------------------------------------

    def hello(self, now: float) -> P.Hello:
        """This node's introduction, stamped with its clock."""
        return P.Hello(
            P.PROTOCOL_VERSION,
            self.name,
            self.session,
            self.capacity,
            self.job_names,
            self.accepting,
            self.durable,
            self.where,
            now,
        )

    def tick(self, now: float) -> None:
        """Every heartbeat interval: hellos, heartbeats, lapsed leases and re-sends. (The driver
        also watches the wall clock, see :meth:`wall_moved`.)"""
        for link in self.links.values():
            if link.refused is not None:
                continue
            if link.welcomed and now >= link.lease_until:
                log.warning(
                    "distributor %s has not answered for %.1fs; saying hello again",
                    link.key,
                    self.timeout,
                )
                link.lapse()
            if not link.welcomed:
                if now - link.hello_at >= 0.9 * self.interval:
                    link.hello_at = now
                    self.port.send(link.key, self.hello(now))
                continue
            self.port.send(link.key, P.Heartbeat(self.session, self.accepting, now, self.capacity))
            for message in link.due_again(now, self.rto):
                self.port.send(link.key, message)
            items = link.handbacks_due(now, self.rto)
            if items:
                self.port.send(link.key, P.HandBack(items, "re-sent"))
            if not link.synced and now - link.sync_at > 2 * self.rto:
                self._sync(link, now)

    def announce(self, now: float) -> None:
        """Tell every welcomed distributor at once whether this node takes jobs."""
        for link in self.links.values():
            if link.welcomed:
                self.port.send(
                    link.key, P.Heartbeat(self.session, self.accepting, now, self.capacity)
                )

    def add_link(self, key: str, now: float) -> None:
        """A distributor to serve from now on (discovery found it): say hello at once."""
        if key in self.links:
            return
        link = self.links[key] = LinkState(key)
        link.hello_at = now
        self.port.send(key, self.hello(now))

    def remove_link(self, key: str, now: float) -> None:
        """A distributor that is gone for good (withdrawn, or its lease ended): its jobs here
        run under the node's own authority and their feedback has nobody to go to."""
        link = self.links.pop(key, None)
        if link is None:
            return
        self._orphan(link, now, "withdrawn")
        self._release_held()

    def _on_welcome(self, link: LinkState, msg: P.Welcome, now: float) -> None:
        if msg.version != P.PROTOCOL_VERSION or msg.node_session != self.session:
            return
        if link.welcomed and msg.session == link.dsession:
            link.renew(msg.echo, self.timeout, now)
            return
        if link.dsession and msg.session != link.dsession:
            self._orphan(link, now, "restarted")
        link.dsession = msg.session
        link.welcomed = True
        link.renew(msg.echo, self.timeout, now)
        log.info("connected to distributor %s", link.key)
        for entry in link.feedback.values():
            entry[1] = now
            self.port.send(link.key, entry[0])
        if link.handbacks:
            for entry in link.handbacks.values():
                entry[2] = now
            self.port.send(link.key, P.HandBack([e[1] for e in link.handbacks.values()], "again"))
        self._sync(link, now)

    def _orphan(self, link: LinkState, now: float, why: str) -> None:
        """The distributor restarted or left: its session's jobs here have nobody to answer to.

        Their feedback is dropped (the new session would drop it too), and jobs handed back
        but never acknowledged stay here and run under the node's own authority.
        """
        log.info(
            "distributor %s %s; %d feedbacks for its previous session dropped",
            link.key,
            why,
            len(link.feedback),
        )
        link.feedback.clear()
        for job_id in list(link.handbacks):
            del link.handbacks[job_id]
            job = self.jobs.get(job_id)
            if job is not None and job.phase == R.HANDING:
                self._schedule(job, job.due, now)
        for job in [
            j for j in self.jobs.values() if j.phase == R.DONE and j.distributor == link.key
        ]:
            self._forget(job)

    def _sync(self, link: LinkState, now: float) -> None:
        """List every assignment held for this distributor session, so it can revoke stale ones."""
        link.sync_id += 1
        link.sync_at = now
        link.synced = False
        refs: list[P.Ref] = [
            (j.id, j.asg)
            for j in self.jobs.values()
            if j.distributor == link.key and j.dsession == link.dsession
        ]
        for i in range(0, max(len(refs), 1), SYNC_CHUNK):
            chunk = refs[i : i + SYNC_CHUNK]
            self.port.send(link.key, P.Sync(link.sync_id, chunk, i + SYNC_CHUNK >= len(refs)))

    def _release_held(self) -> None:
        if self.held:
            for job in reversed(self.held):
                self._make_ready(job, front=True)
            self.held.clear()
            self.port.kick()

    def _make_ready(self, job: JobRecord, *, front: bool = False) -> None:
        """Queue a due job: higher priority first, FIFO within one (``front``: ahead of its
        priority, for a job that was already next)."""
        if job.priority:
            order = next(self._front) if front else next(self._order)
            heapq.heappush(self.ranked, (-job.priority, order, job))
        elif front:
            self.ready.appendleft(job)
        else:
            self.ready.append(job)

    def _handable(self, job: JobRecord) -> LinkState | None:
        """The link a job can be handed back over, if its distributor is current and welcomed."""
        link = self.links.get(job.distributor)
        if link is None or not link.welcomed or job.dsession != link.dsession:
            return None
        return link

    # -- messages ---------------------------------------------------------------------------------

    def on_messages(self, key: str, messages: list[P.Message], now: float, wall: float) -> None:
        """Handle what the distributor ``key`` sent."""
        link = self.links.get(key)
        if link is None:
            return
        jobs: list[P.Job] = []
        for msg in messages:
            kind = type(msg)
            if kind is P.Job:
                jobs.append(msg)  # type: ignore[arg-type]
                continue
            if jobs:
                self._receive(link, jobs, now, wall)
                jobs = []
            if kind is P.FeedbackAck:
                self._on_feedback_ack(link, msg)  # type: ignore[arg-type]
            elif kind is P.Heartbeat:
                if link.welcomed and msg.session == link.dsession:  # type: ignore[union-attr]
                    link.renew(msg.stamp, self.timeout, now)  # type: ignore[union-attr]
                    if self.held and link.runnable(now):
                        self._release_held()
            elif kind is P.Cancel or kind is P.Revoke:
                self._on_cancel(msg, now)  # type: ignore[arg-type]
            elif kind is P.HandBackAck:
                self._on_hand_back_ack(link, msg)  # type: ignore[arg-type]
            elif kind is P.SyncReply:
                self._on_sync_reply(link, msg)  # type: ignore[arg-type]
            elif kind is P.Welcome:
                self._on_welcome(link, msg, now)  # type: ignore[arg-type]
            elif kind is P.Reset:
                if link.welcomed or now - link.hello_at >= 0.5 * self.interval:
                    log.info("distributor %s asks for a hello (%s)", key, msg.reason)  # type: ignore[union-attr]
                    link.lapse()
                    link.hello_at = now
                    self.port.send(key, self.hello(now))
            elif kind is P.Refused:
                self._on_refused(link, msg)  # type: ignore[arg-type]
            else:
                log.warning(
                    "distributor %s sent a %s, which only a node sends; dropped", key, kind.__name__
                )
        if jobs:
            self._receive(link, jobs, now, wall)

    def _on_refused(self, link: LinkState, msg: P.Refused) -> None:
        """A refusal answers a hello: a welcomed link ignores it, and only a taken name is final
        (a protocol mismatch may end with an upgrade, so the node keeps saying hello)."""
        if msg.session != self.session or link.welcomed or link.refused is not None:
            return
        if msg.kind != "NodeNameTaken":
            log.error("distributor %s refused this node: %s", link.key, msg.reason)
            return
        link.refused = (msg.kind, msg.reason)
        self.port.refused(link.key, msg.kind, msg.reason)

    def _receive(self, link: LinkState, messages: list[P.Job], now: float, wall: float) -> None:
        if not link.welcomed:
            return  # sent before our hello was answered: it comes again
        if not self.accepting:
            self.port.send(link.key, P.Heartbeat(self.session, False, now, self.capacity))
            why = "the node is stopping" if self.stopping else "the node cannot take jobs now"
            self.port.send(link.key, P.Rejected([(m.id, m.asg) for m in messages], why))
            return
        jobs = self.jobs
        fresh: list[JobRecord] = []
        again: list[P.Ref] = []
        for m in messages:
            job = jobs.get(m.id)
            if job is not None:
                if m.asg > job.asg and job.dsession == link.dsession:
                    self._adopt(job, m.asg, now)
                elif m.asg != job.asg:
                    continue
                if job.phase != R.STORING:
                    again.append((m.id, m.asg))  # a re-send: acknowledge it again
                continue
            due = 0.0
            run_at = 0.0
            if m.run_at:
                run_at = m.run_at
                if m.run_at > wall:
                    due = now + (m.run_at - wall)
            elif m.delay > 0:
                due = now + m.delay
                run_at = wall + m.delay
            record = JobRecord(
                m.id,
                m.name,
                m.args,
                attempt=m.attempt,
                run_at=run_at,
                period=m.period,
                make_after=m.delay,
                defer=m.defer,
                distributor=link.key,
                node=self.name,
                enqueued_at=m.enqueued_at,
                asg=m.asg,
                dsession=link.dsession,
            )
            if m.timeout is not None or m.max_attempt is not None or m.cron or m.priority:
                record.timeout = m.timeout
                record.max_attempt = m.max_attempt
                record.cron = m.cron
                record.tz = m.tz
                record.priority = m.priority
            record.due = due
            jobs[m.id] = record
            fresh.append(record)
        if again:
            self.port.send(link.key, P.Stored(again))
        if fresh:
            self.stats["received"] += len(fresh)
            if self.port.store(link.key, fresh):
                self.stored(link.key, fresh, now)

    def _adopt(self, job: JobRecord, asg: int, now: float) -> None:
        """The distributor gave us again a job we hold under an older assignment: take it."""
        old = job.asg
        job.asg = asg
        link = self.links.get(job.distributor)
        if job.phase == R.HANDING:
            if link is not None:
                link.handbacks.pop(job.id, None)
            self._schedule(job, job.due, now)
        elif job.phase == R.DONE and job.final_key is not None and link is not None:
            entry = link.feedback.pop(job.final_key, None)
            if entry is not None:
                message = list(entry[0])
                message[2] = asg
                job.final_key = (job.id, asg, message[3])
                link.feedback[job.final_key] = [message, now]
                self.port.send(link.key, message)
        elif job.phase not in (R.STORING, R.DONE):
            self.port.write(job)
        log.debug("job %s: assignment %d replaces %d", job.id, asg, old)

    def stored(self, key: str, records: list[JobRecord], now: float) -> None:
        """Storage has written ``records``: acknowledge them and schedule them."""
        refs: list[P.Ref] = []
        for job in records:
            if job.revoked:
                self._forget(job)
                continue
            refs.append((job.id, job.asg))
            if job.cancel_requested:
                self._end(job, P.CANCELLED, job.args, None, R.CANCELLED, now)
                continue
            if job.cron is not None and (problem := cron_problem(job)):
                # a zone this node's system lacks: no other node is likelier to have it
                self.fail(job, "ConfigError", f"node {self.name}: {problem}", now, job.enqueued_at)
                continue
            self._schedule(job, job.due, now)
        if refs:
            self.port.send(key, P.Stored(refs))

    def store_failed(self, key: str, records: list[JobRecord], reason: str) -> None:
        """Storage could not write ``records``: the distributor routes them elsewhere."""
        for job in records:
            if self.jobs.get(job.id) is job:
                del self.jobs[job.id]
        self.port.send(key, P.Rejected([(j.id, j.asg) for j in records], reason))

    def _on_feedback_ack(self, link: LinkState, msg: P.FeedbackAck) -> None:
        feedback = link.feedback
        jobs = self.jobs
        for item in msg.items:
            key = tuple(item)
            if feedback.pop(key, None) is None:
                continue
            job = jobs.get(item[0])
            if job is not None and job.final_key == key:
                del jobs[item[0]]

    def _on_hand_back_ack(self, link: LinkState, msg: P.HandBackAck) -> None:
        for job_id, asg in msg.items:
            entry = link.handbacks.get(job_id)
            if entry is None or entry[0] != asg:
                continue
            del link.handbacks[job_id]
            job = self.jobs.get(job_id)
            if job is not None and job.phase == R.HANDING and job.asg == asg:
                self._forget(job)

    def _on_sync_reply(self, link: LinkState, msg: P.SyncReply) -> None:
        if msg.sync_id != link.sync_id:
            return
        for job_id, asg in msg.stale:
            self._revoke(job_id, asg)
        if msg.last and link.welcomed:
            link.synced = True
            self._release_held()

    def _on_cancel(self, msg: P.Cancel | P.Revoke, now: float) -> None:
        if isinstance(msg, P.Cancel):
            for job_id, asg in msg.items:
                self._cancel(job_id, asg, now)
        else:
            for job_id, asg in msg.items:
                self._revoke(job_id, asg)

    def _cancel(self, job_id: str, asg: int, now: float) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.asg != asg or job.cancel_requested:
            return
        job.cancel_requested = True
        if job.phase == R.WAITING:
            self.timers.cancel(job.timer)
            job.timer = None
            self._finish_cancelled(job, now)
        # READY: skipped when it comes up; RUNNING: ends after this run; STORING: once stored

    def _revoke(self, job_id: str, asg: int) -> None:
        """Drop a stale copy without a word (its job lives elsewhere, or is finished)."""
        job = self.jobs.get(job_id)
        if job is None or job.asg != asg:
            return
        job.revoked = True
        link = self.links.get(job.distributor)
        if link is not None:
            link.handbacks.pop(job_id, None)
            if job.final_key is not None:
                link.feedback.pop(job.final_key, None)
        if job.phase == R.WAITING:
            self.timers.cancel(job.timer)
            job.timer = None
        if job.phase == R.DONE:  # its stored record already follows the retention settings
            if self.jobs.get(job_id) is job:
                del self.jobs[job_id]
        elif job.phase not in (R.RUNNING, R.STORING):
            self._forget(job)  # READY copies are skipped when they come up

    def _forget(self, job: JobRecord) -> None:
        if self.jobs.get(job.id) is job:
            del self.jobs[job.id]
            self.port.remove(job)

    # -- scheduling -------------------------------------------------------------------------------

    def resume(self, records: list[JobRecord], now: float, wall: float) -> None:
        """Take back the records storage kept across a restart (DESIGN §3 "Durable nodes")."""
        for job in records:
            if job.id in self.jobs:
                continue
            self.jobs[job.id] = job
            due = now + (job.run_at - wall) if job.run_at > wall else 0.0
            if job.status == R.IN_PROGRESS:
                # The node died while this ran: that run counts as an attempt (its number and
                # "in progress" were written before the body started).
                job.last_error = f"NodeCrashed: the node died during attempt {job.attempt}"
                job.failed_at = wall
                if job.attempt >= (limit := self.policy(job).limit(job)):
                    message = (
                        f"the node died while the job was running, on attempt {job.attempt} of "
                        f"max_attempt {limit} (a crash counts as an attempt); not "
                        "run again, so that a job that kills its node cannot crash-loop it"
                    )
                    job.last_error = f"NodeCrashed: {message}"
                    log.error("job %s (%r): %s", job.id, job.name, message)
                    self.stats["failed"] += 1
                    error = ("NodeCrashed", message, "")
                    self._end(
                        job, P.FAILURE, P.pack_result_args(args_or_empty(job)), error, R.FAILED, now
                    )
                    continue
                job.status = R.ERROR
                job.run_at = wall
                due = 0.0
                self.port.write(job)
            if job.cron is not None and (problem := cron_problem(job)):
                self.fail(job, "ConfigError", f"node {self.name}: {problem}", now, wall)
                continue
            self._schedule(job, due, now)
        if records:
            log.info("node %s resumed %d stored jobs", self.name, len(records))

    def _schedule(self, job: JobRecord, due: float, now: float) -> None:
        job.due = due
        if self.stopping and self._handable(job) is not None:
            self._hand_back([job], "the node is stopping", now)
            return
        if due:
            job.phase = R.WAITING
            job.timer = self.timers.add(due, job)
            if due < self._armed:
                self._armed = due
                self.port.arm(due)
        else:
            job.phase = R.READY
            if job.priority:
                self._make_ready(job)
            else:
                self.ready.append(job)
            self.port.kick()

    def wall_moved(self, now: float, wall: float) -> int:
        """The wall clock jumped: re-arm every waiting ``run_at=`` and ``cron=`` job on its wall
        instant.

        ``after=``, ``period=`` and retry delays are durations and keep their due times. A job
        whose instant has passed goes through the timer at once (its record is checked first).
        Returns how many jobs were re-armed.
        """
        moved = 0
        for job in self.jobs.values():
            if job.phase != R.WAITING or (job.cron is None and not at_wall(job)):
                continue
            self.timers.cancel(job.timer)
            job.timer = None
            self._schedule(job, now + max(0.0, job.run_at - wall), now)
            moved += 1
        return moved

    def fire_timers(self, now: float, wall: float | None = None) -> None:
        """The armed timer went off: move due jobs on (after checking they were not deleted).

        With ``wall``, a cron job whose instant the wall clock has not reached yet (the clock
        was set back, or the timer fired a hair early) waits the rest on a new timer.
        """
        self._armed = float("inf")
        due = self.timers.pop_due(now)
        if wall is not None and due:
            early = [j for j in due if j.cron is not None and j.run_at - wall > _EARLY]
            if early:
                due = [j for j in due if j not in early]
                for job in early:
                    job.timer = None
                    self._schedule(job, now + (job.run_at - wall), now)
        nxt = self.timers.earliest()
        if nxt is not None:
            self._armed = nxt
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
        for i, (job, exists) in enumerate(zip(jobs, alive, strict=True)):
            if job.phase != R.WAITING or job.revoked:
                continue
            if not exists and lost is not None and lost[i]:
                message = "the job's record vanished from storage without a destroy (evicted?)"
                log.error("job %s (%r): %s", job.id, job.name, message)
                job.failed_at = job.run_at
                job.last_error = f"JobLost: {message}"
                self.stats["failed"] += 1
                self._end(
                    job, P.FAILURE, job.args, ("JobLost", message, ""), R.FAILED, now, deleted=True
                )
                continue
            if not exists:
                log.info("job %s (%r) was deleted from storage: not running it", job.id, job.name)
                self._finish_cancelled(job, now, deleted=True)
                continue
            job.phase = R.READY
            self._make_ready(job)
        self.port.kick()

    def next_ready(self, now: float) -> JobRecord | None:
        """The next job that may start now, or None (jobs of an unsynced link are held)."""
        ready = self.ready
        ranked = self.ranked
        links = self.links
        while True:
            # A ranked job goes first when its priority is above 0 (its key is -priority), or
            # when no plain job is left; without ranked jobs this is the plain deque path.
            if ranked and (ranked[0][0] < 0 or not ready):
                job = heapq.heappop(ranked)[2]
            elif ready:
                job = ready.popleft()
            else:
                return None
            if job.phase != R.READY or job.revoked:
                continue
            if job.cancel_requested:
                self._finish_cancelled(job, now)
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
        if self.slot_wait and not self.stopping:
            self._make_ready(self.slot_wait.popleft(), front=True)
            self.port.kick()

    def begin(self, job: JobRecord, wall: float, *, write: bool = True) -> None:
        """An attempt starts: count it and persist it (``write=False``: the caller writes it
        ahead of the body itself, see reactor.node.write_ahead). A cron job keeps its instant in
        ``run_at`` when it starts a hair before it, so that its next run follows that one."""
        job.phase = R.RUNNING
        job.status = R.IN_PROGRESS
        job.attempt += 1
        if job.cron is None or wall > job.run_at:
            job.run_at = wall
        self.running += 1
        self.stats["attempts"] += 1
        if write:
            self.port.write(job)

    def dropped(self, job: JobRecord, now: float) -> None:
        """A begun job will not start after all: it was revoked or cancelled while its attempt
        was being written (the attempt stays counted)."""
        self.running -= 1
        if job.revoked:
            self._forget(job)
        else:
            self._finish_cancelled(job, now)
        self.slot_freed()

    # -- outcomes ---------------------------------------------------------------------------------

    def finished(self, job: JobRecord, attempt: Attempt, now: float, wall: float) -> None:
        """An attempt ended: apply the job's lifecycle rules (DESIGN §5)."""
        self.running -= 1
        if job.revoked:
            self._forget(job)
            return
        policy = self.policies.get(job.name, self.default_policy)  # not self.policy(): hot
        nxt, delay = after_attempt(job, attempt.outcome, policy, wall, attempt.error, self.rng)
        args = attempt.args
        if nxt is Next.SUCCEEDED:
            self.stats["succeeded"] += 1
            self._end(job, P.SUCCESS, P.pack_result_args(args), None, R.COMPLETE, now)
        elif nxt is Next.AGAIN:
            self.stats["succeeded"] += 1
            packed = P.pack_result_args(args)
            args.pop("job_itself", None)
            job.args = P.pack_result_args(args)
            job.status = R.QUEUED
            job.attempt = 0
            job.run_at = wall + delay
            self.port.write(job)
            self._feedback(job, P.SUCCESS, packed, None, final=False, now=now)
            self._schedule(job, now + delay, now)
        elif nxt is Next.STOPPED:
            self._feedback(job, P.SUCCESS, P.pack_result_args(args), None, final=False, now=now)
            self._finish_cancelled(job, now)
        elif nxt is Next.SELF_CANCELLED:
            self._end(job, P.SUCCESS, P.pack_result_args(args), None, R.CANCELLED, now)
        else:
            assert attempt.error is not None
            self._failed(job, nxt, delay, args, attempt.error, now, wall)

    def _failed(
        self,
        job: JobRecord,
        nxt: Next,
        delay: float,
        args: dict[str, Any],
        exc: BaseException,
        now: float,
        wall: float,
    ) -> None:
        self.stats["failed"] += 1
        error = error_triple(exc)
        job.failed_at = wall
        summary = f"{error[0]}: {error[1]}" if error[1] else error[0]
        # The traceback's tail follows the summary line, for the monitor and the dashboard.
        job.last_error = f"{summary}\n{error[2][-TRACEBACK_KEPT:]}" if error[2] else summary
        kept = {k: v for k, v in args.items() if k not in ("error", "job_itself")}
        job.args = P.pack_result_args(kept)
        if self.config["log_job_processing"]:
            log.warning("job %s %r failed (attempt %d): %s", job.id, job.name, job.attempt, summary)
        if nxt is Next.CANCELLED:
            self._finish_cancelled(job, now)
            return
        if nxt is not Next.RETRY:
            status = R.CANCELLED if nxt is Next.ERRBACK_CANCELLED else R.FAILED
            self._end(job, P.FAILURE, P.pack_result_args(kept), error, status, now)
            return
        job.status = R.ERROR
        job.run_at = wall + delay
        self.port.write(job)
        if delay > 0 and job.period is None and job.cron is None:
            link = self._handable(job)
            if link is not None:
                self.port.send(link.key, P.Parked([(job.id, job.asg, job.attempt)]))
        self._schedule(job, now + delay if delay > 0 else 0.0, now)

    def policy(self, job: JobRecord) -> RetryPolicy:
        """The retry policy of ``job``'s name on this node."""
        return self.policies.get(job.name, self.default_policy)

    def fail(self, job: JobRecord, type_name: str, message: str, now: float, wall: float) -> None:
        """End a job that cannot run (unknown name, undecodable args): error feedback, no retry."""
        if job.phase == R.RUNNING:
            self.running -= 1
        job.failed_at = wall
        job.last_error = f"{type_name}: {message}"
        log.error("job %s (%r): %s", job.id, job.name, message)
        self._end(
            job,
            P.FAILURE,
            P.pack_result_args(args_or_empty(job)),
            (type_name, message, ""),
            R.FAILED,
            now,
        )

    def _finish_cancelled(self, job: JobRecord, now: float, *, deleted: bool = False) -> None:
        self.stats["cancelled"] += 1
        self._end(job, P.CANCELLED, job.args, None, R.CANCELLED, now, deleted=deleted)

    def _end(
        self,
        job: JobRecord,
        outcome: int,
        args: bytes,
        error: tuple[str, str, str] | None,
        status: str,
        now: float,
        *,
        deleted: bool = False,
    ) -> None:
        """The job is finished: final feedback, and retention of its record."""
        job.status = status
        if deleted:
            pass
        elif self.config[_RETENTION[status]]:
            self.port.remove(job)
        else:
            self.port.write(job)
        self._feedback(job, outcome, args, error, final=True, now=now)

    def _feedback(
        self,
        job: JobRecord,
        outcome: int,
        args: bytes,
        error: tuple[str, str, str] | None,
        *,
        final: bool,
        now: float,
    ) -> None:
        job.seq += 1
        link = self.links.get(job.distributor)
        if link is None or (link.dsession and job.dsession != link.dsession):
            if final and self.jobs.get(job.id) is job:  # nobody to tell: an orphan
                del self.jobs[job.id]
            return
        message = [P.FEEDBACK, job.id, job.asg, job.seq, outcome, final, args, error]
        key = (job.id, job.asg, job.seq)
        link.feedback[key] = [message, now]
        if final:
            job.phase = R.DONE
            job.final_key = key
        if link.welcomed:
            self.port.send(link.key, message)

    # -- handing back -----------------------------------------------------------------------------

    def _hand_back(self, jobs: list[JobRecord], reason: str, now: float) -> int:
        per_link: dict[str, list[Any]] = {}
        for job in jobs:
            link = self._handable(job)
            if link is None:
                continue
            if job.phase == R.WAITING:
                self.timers.cancel(job.timer)
                job.timer = None
            job.phase = R.HANDING
            delay = max(0.0, job.due - now) if job.due else 0.0
            item = (job.id, job.asg, job.attempt, delay)
            link.handbacks[job.id] = [job.asg, item, now]
            per_link.setdefault(link.key, []).append(item)
        for key, items in per_link.items():
            self.port.send(key, P.HandBack(items, reason))
        return sum(map(len, per_link.values()))

    def hand_back_ready(self, now: float, reason: str) -> int:
        """Give every due job that has not started back to its distributor (a blocked loop)."""
        ranked = [entry[2] for entry in sorted(self.ranked)]
        waiting = [j for j in (*ranked, *self.ready, *self.slot_wait) if j.phase == R.READY]
        self.ready.clear()
        self.ranked.clear()
        self.slot_wait.clear()
        count = self._hand_back(waiting, reason, now)
        for job in waiting:
            if job.phase == R.READY:
                self._make_ready(job)
        return count

    def stop(self, now: float) -> int:
        """Stop taking jobs and hand back every job that has not started (DESIGN §3)."""
        self.stopping = True
        self.announce(now)
        waiting = [j for j in self.jobs.values() if j.phase in (R.READY, R.WAITING)]
        count = self._hand_back(waiting, "the node is stopping", now)
        self.ready = deque(j for j in self.ready if j.phase == R.READY)
        self.ranked[:] = [entry for entry in self.ranked if entry[2].phase == R.READY]
        heapq.heapify(self.ranked)
        self.held = deque(j for j in self.held if j.phase == R.READY)
        self.slot_wait = deque(j for j in self.slot_wait if j.phase == R.READY)
        return count

    @property
    def settled(self) -> bool:
        """Whether nothing runs and welcomed distributors have acknowledged every message."""
        if self.running:
            return False
        return not any(
            link.welcomed and (link.feedback or link.handbacks) for link in self.links.values()
        )

    def bye(self) -> None:
        """Tell every welcomed distributor this session is over."""
        for link in self.links.values():
            if link.welcomed:
                self.port.send(link.key, P.Bye(self.session))
