"""The node's delivery logic: receipt, fencing, scheduling, outcomes, hand-back and sync.

:class:`NodeCore` holds the node's job records and its standing with each distributor
(:class:`~reactor.core.link.LinkState`). It is fed messages, storage results, timer ticks and
finished attempts, and acts through a :class:`NodePort` (send, store, write, arm a timer, run).
It is a thin dispatcher over parts that own their state: :class:`~reactor.core.intake.Intake`
(receipt, adoption, cancel, revoke, resume), :class:`~reactor.core.runqueue.RunQueue` (due jobs,
timers, held jobs, slot waiters), :class:`~reactor.core.start.StartRule` (which jobs start now)
:class:`~reactor.core.limits.Limits` (concurrency and rate limits) and
:class:`~reactor.core.outcomes.Outcomes` (ended attempts, feedback, hand-back). The protocol
with each distributor (hello, heartbeats, sync, acks) stays here; LinkState says when its jobs run.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from reactor.config import Config
from reactor.core.gate import MemoryGate
from reactor.core.intake import Intake
from reactor.core.lifecycle import RetryPolicy
from reactor.core.limits import Gate, Limits
from reactor.core.link import SYNC_CHUNK, LinkState
from reactor.core.outcomes import Outcomes
from reactor.core.port import NodePort as NodePort
from reactor.core.runqueue import RunQueue
from reactor.core.schedule import TimerHeap
from reactor.core.start import Kinds, StartRule
from reactor.core.wallclock import WallWatch
from reactor.jobs import record as R
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobEntry
from reactor.wire import protocol as P

log = logging.getLogger("reactor.node")

#: A distributor's message handler: (its link, the message, monotonic now).
_Handler = Callable[[LinkState, Any, float], None]


def _no_body(args: dict[str, Any]) -> None:
    """The body of the placeholder entries of :func:`inline_kinds`."""


def inline_kinds(job_names: list[str]) -> Kinds:
    """Every name in ``job_names`` as a ``def`` job (the default for cores driven by hand)."""
    entries = {name: JobEntry(name, body=_no_body) for name in job_names}
    return entries.get


class NodeCore:
    """A node's jobs and its protocol with its distributors (no I/O; see the module docstring).

    ``kinds`` gives each job name's entry (None: a name the node does not know); by default every
    name in ``job_names`` is a ``def`` job.
    """

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
        kinds: Kinds | None = None,
        gate: Gate | None = None,
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
        self.lost_after = max(float(config["node_lost_after"]), self.timeout)
        self.rto = 2 * self.interval
        self.max_attempt = int(config["max_attempt"])
        self.retry_multiplier = float(config["retry_multiplier"])
        self.links = {key: LinkState(key) for key in links}
        self.jobs: dict[str, JobRecord] = {}
        self.started = False
        self.stopping = False
        self.storage_ok = True
        self.blocked = False
        #: The node has a result store: final outcomes its distributor may never hear of (it is
        #: silent, restarted or gone) are kept there (issue 18).
        self.keeps_results = False
        self._wall = WallWatch()
        self.stats = {"received": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "attempts": 0}
        # The parts, each reaching the ones made before it directly and the others via the core.
        queue = self.queue = RunQueue(self)
        lease = float(config["node_lost_after"])
        self.limits = Limits(self, gate or MemoryGate(lease=lease))
        self.limits.adoptable = gate is None
        start = self.start = StartRule(
            self, capacity=capacity, kinds=kinds or inline_kinds(job_names)
        )
        outcomes = self.outcomes = Outcomes(self, policies=policies, rng=rng)
        intake = self.intake = Intake(self)
        # The public methods are the parts' own (bound once: no extra call on the hot path).
        self.next_ready = queue.next_ready
        self.wait_slot = queue.wait_slot
        self.slot_freed = queue.slot_freed
        self.fire_timers = queue.fire_timers
        self.timers_checked = queue.timers_checked
        self.wall_moved = queue.wall_moved
        self.start_next = start.start_next
        self.start_batch = start.start_batch
        self.begin = start.begin
        self.written = start.written
        self.dropped = start.dropped
        self.finished = outcomes.finished
        self.fail = outcomes.fail
        self.policy = outcomes.policy
        self.hand_back_ready = outcomes.hand_back_ready
        self.stored = intake.stored
        self.store_failed = intake.store_failed
        self.resume = intake.resume
        self._handlers: dict[type, _Handler] = {
            P.FeedbackAck: self._on_feedback_ack,
            P.Heartbeat: self._on_heartbeat,
            P.Cancel: intake.on_cancel,
            P.Revoke: intake.on_cancel,
            P.HandBackAck: self._on_hand_back_ack,
            P.SyncReply: self._on_sync_reply,
            P.Welcome: self._on_welcome,
            P.Reset: self._on_reset,
            P.Refused: self._on_refused,
            P.Bye: self._on_bye,
        }

    # -- the parts' state, read by drivers and tests ----------------------------------------------

    @property
    def ready(self) -> deque[JobRecord]:
        """Due jobs of priority 0, in start order."""
        return self.queue.ready

    @property
    def ranked(self) -> list[tuple[int, int, JobRecord]]:
        """Due jobs of another priority, as a heap of (-priority, order, job)."""
        return self.queue.ranked

    @property
    def held(self) -> deque[JobRecord]:
        """Due jobs whose link is not runnable yet."""
        return self.queue.held

    @property
    def slot_wait(self) -> deque[JobRecord]:
        """Due async jobs waiting for a free slot."""
        return self.queue.slot_wait

    @property
    def timers(self) -> TimerHeap[JobRecord]:
        """Jobs waiting for their due time."""
        return self.queue.timers

    @property
    def running(self) -> int:
        """Attempts begun and not ended."""
        return self.start.running

    @property
    def policies(self) -> dict[str, RetryPolicy]:
        """Each job's retry policy by name (others get :attr:`default_policy`)."""
        return self.outcomes.policies

    @property
    def default_policy(self) -> RetryPolicy:
        """The retry policy of a job with no ``@job`` settings: the node's."""
        return self.outcomes.default_policy

    @property
    def accepting(self) -> bool:
        """Whether the node takes new jobs."""
        return self.started and self.storage_ok and not self.stopping and not self.blocked

    @property
    def idle(self) -> bool:
        """Whether no job is ready or running."""
        return self.queue.empty and not self.start.running

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

    def tick(self, now: float, wall: float | None = None) -> None:
        """Every heartbeat interval: hellos, heartbeats, lapsed leases and re-sends; with
        ``wall``, a jump of the wall clock re-arms the jobs waiting for a wall instant."""
        if wall is not None:
            self._check_wall(now, wall)
        self.limits.tick(now)
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
                self.outcomes.keep_pending(link)
            if not link.welcomed:
                if link.abandoned(now, self.timeout, self.lost_after):
                    self.intake.stand_in(link, now)
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

    def _check_wall(self, now: float, wall: float) -> None:
        """Re-arm ``run_at=`` jobs when the wall clock jumped (see reactor.core.wallclock)."""
        jump = self._wall.moved(now, wall)
        if jump:
            moved = self.queue.wall_moved(now, wall)
            log.warning(
                "node %s: the wall clock jumped %+.1fs; %d run_at= jobs re-armed on it",
                self.name,
                jump,
                moved,
            )

    def keep_unacknowledged(self) -> None:
        """The node stops: keep the final outcomes no distributor acknowledged in the result
        store (when it has one), as nobody may be left to hear of them."""
        for link in self.links.values():
            self.outcomes.keep_pending(link)

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
        self.intake.orphan(link, now, "withdrawn")
        self.queue.release_held()

    # -- messages ---------------------------------------------------------------------------------

    def on_messages(self, key: str, messages: list[P.Message], now: float, wall: float) -> None:
        """Handle what the distributor ``key`` sent (runs of jobs are received together)."""
        link = self.links.get(key)
        if link is None:
            return
        receive = self.intake.receive
        handlers = self._handlers
        jobs: list[P.Job] = []
        for msg in messages:
            if type(msg) is P.Job:
                jobs.append(msg)
                continue
            if jobs:
                receive(link, jobs, now, wall)
                jobs = []
            handler = handlers.get(type(msg))
            if handler is None:
                log.warning(
                    "distributor %s sent a %s, which only a node sends; dropped",
                    key,
                    type(msg).__name__,
                )
            else:
                handler(link, msg, now)
        if jobs:
            receive(link, jobs, now, wall)

    def _on_heartbeat(self, link: LinkState, msg: P.Heartbeat, now: float) -> None:
        if link.welcomed and msg.session == link.dsession:
            link.renew(msg.stamp, self.timeout, now)
            if self.queue.held and link.runnable(now):
                self.queue.release_held()

    def _on_reset(self, link: LinkState, msg: P.Reset, now: float) -> None:
        if link.welcomed or now - link.hello_at >= 0.5 * self.interval:
            log.info("distributor %s asks for a hello (%s)", link.key, msg.reason)
            link.lapse()
            link.hello_at = now
            self.port.send(link.key, self.hello(now))

    def _on_welcome(self, link: LinkState, msg: P.Welcome, now: float) -> None:
        if msg.version != P.PROTOCOL_VERSION or msg.node_session != self.session:
            return
        if link.welcomed and msg.session == link.dsession:
            link.renew(msg.echo, self.timeout, now)
            return
        if link.dsession and msg.session != link.dsession:
            self.intake.orphan(link, now, "restarted")
        link.dsession = msg.session
        link.welcomed = True
        link.renew(msg.echo, self.timeout, now)
        log.info("connected to distributor %s", link.key)
        if msg.limits_store and self.limits.adopting():
            self.port.adopt_limits_store(msg.limits_store)
        for entry in link.feedback.values():
            entry[1] = now
            self.port.send(link.key, entry[0])
        if link.handbacks:
            for entry in link.handbacks.values():
                entry[2] = now
            self.port.send(link.key, P.HandBack([e[1] for e in link.handbacks.values()], "again"))
        self._sync(link, now)

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

    def _on_refused(self, link: LinkState, msg: P.Refused, now: float) -> None:
        """A refusal answers a hello: a welcomed link ignores it, and only a taken name is final
        (a protocol mismatch may end with an upgrade, so the node keeps saying hello)."""
        if msg.session != self.session or link.welcomed or link.refused is not None:
            return
        if msg.kind != "NodeNameTaken":
            log.error("distributor %s refused this node: %s", link.key, msg.reason)
            return
        link.refused = (msg.kind, msg.reason)
        self.port.refused(link.key, msg.kind, msg.reason)

    def _on_bye(self, link: LinkState, msg: P.Bye, now: float) -> None:
        """The distributor stopped (its application exited after a drain): the jobs it left
        here are the node's own from now on. They run without its lease (nobody is left to
        reassign them), and their outcomes, which nobody will hear of, go to the result store
        when the node has one. Without this, a job stored just before its application exited
        waited for a sync that never came, forever (issue 18)."""
        if not link.dsession or msg.session != link.dsession:
            return
        self.intake.take_over(link, now, "stopped")
        self.port.send(link.key, P.Bye(self.session))  # the answer its stop waits for

    def _on_feedback_ack(self, link: LinkState, msg: P.FeedbackAck, now: float) -> None:
        feedback = link.feedback
        jobs = self.jobs
        for item in msg.items:
            key = tuple(item)
            if feedback.pop(key, None) is None:
                continue
            job = jobs.get(item[0])
            if job is not None and job.final_key == key:
                del jobs[item[0]]

    def _on_hand_back_ack(self, link: LinkState, msg: P.HandBackAck, now: float) -> None:
        for job_id, asg in msg.items:
            entry = link.handbacks.get(job_id)
            if entry is None or entry[0] != asg:
                continue
            del link.handbacks[job_id]
            job = self.jobs.get(job_id)
            if job is not None and job.phase == R.HANDING and job.asg == asg:
                self.intake.forget(job)

    def _on_sync_reply(self, link: LinkState, msg: P.SyncReply, now: float) -> None:
        if msg.sync_id != link.sync_id:
            return
        for job_id, asg in msg.stale:
            self.intake.revoke(job_id, asg)
        if msg.last and link.welcomed:
            link.synced = True
            self.queue.release_held()

    def stop(self, now: float) -> int:
        """Stop taking jobs and hand back every job that has not started (DESIGN §3)."""
        self.stopping = True
        self.announce(now)
        waiting = [j for j in self.jobs.values() if j.phase in (R.READY, R.WAITING)]
        count = self.outcomes.hand_back(waiting, "the node is stopping", now)
        self.queue.prune()
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
