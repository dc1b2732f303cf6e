"""The distributor's delivery logic: assignment, fencing, retransmission, liveness verdicts.

:class:`DistributorCore` owns every job from enqueue to its terminal outcome (DESIGN §3). Each
assignment of a job to a node carries a new assignment number; a message naming an older one is
answered with a revoke and never changes the job's outcome. Jobs not yet stored are re-sent on
every reconnect and on a timer; a node silent past ``heartbeat_timeout`` gets nothing new and its
unstored jobs go elsewhere; past ``node_lost_after`` every job it held goes elsewhere."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

from reactor.config import Config
from reactor.core.admission import Admission, Sender
from reactor.core.jobstate import JobState
from reactor.core.liveness import Liveness, Verdict
from reactor.core.resync import on_sync
from reactor.core.routing import NodeState, Presence, Router
from reactor.wire import protocol as P

log = logging.getLogger("reactor.distributor")


#: A handler of one kind of message from an admitted node session: ``(node, msg, peer, now)``.
Handler = Callable[[NodeState, Any, bytes, float], None]


class DistributorPort(Sender, Protocol):
    """What the core asks of its driver: sending (see :class:`Sender`), and outcomes."""

    def feedback(self, job: JobState, fb: P.Feedback) -> None:
        """An accepted feedback; a final one is the job's outcome (the core has forgotten it)."""

    def cancelled(self, job: JobState) -> None:
        """The application's cancel ended ``job`` without a node's feedback."""

    def progress(self, job: JobState, msg: P.Progress) -> None:
        """A progress report of ``job``'s current assignment (not acknowledged)."""


class DistributorCore:
    """Owns the jobs of one distributor session and the protocol with its nodes.

    Args:
        port: the driver's side (sending, delivering outcomes).
        address: ``host:port`` as announced in welcomes.
        session: this distributor's session id (a new one per start).
        config: read live (``always_use_specified_node``) and at construction (timings).
    """

    def __init__(self, port: DistributorPort, *, address: str, session: str, config: Config):
        self.port = port
        self.address = address
        self.session = session
        self.config = config
        self.interval = float(config["heartbeat_interval"])
        self.rto = 2 * self.interval  # re-send what is not acknowledged after this long
        self.liveness = Liveness(
            interval=self.interval,
            timeout=float(config["heartbeat_timeout"]),
            lost_after=float(config["node_lost_after"]),
        )
        self.router = Router(strict=lambda: bool(config["always_use_specified_node"]))
        self.jobs: dict[str, JobState] = {}
        self._cancelling: dict[str, JobState] = {}
        self._acks: dict[bytes, list[P.Ref]] = {}
        self.stopping = False  # the bye was said: the session is ending
        self.saying_bye: set[str] = set()  # nodes told, yet to answer
        self.admission = Admission(
            port,
            self.router,
            self.liveness,
            address=address,
            session=session,
            limits_store=config["limits_store"] or "",
        )
        #: Who handles each kind of message from an admitted node (HELLO is admission's).
        self._handlers: dict[type, Handler] = {
            P.Stored: self._on_stored,
            P.Feedback: self._on_feedback,
            P.Heartbeat: self._on_heartbeat,
            P.Parked: self._on_parked,
            P.Rejected: self._on_rejected,
            P.HandBack: self._on_hand_back,
            P.Sync: functools.partial(on_sync, self),
            P.Progress: self._on_progress,
            P.Bye: self._on_bye,
        }
        self._strangers = 0  # feedbacks from unknown sessions in the batch being handled
        self.stats = {
            "feedback_received": 0,
            "feedback_duplicate": 0,
            "feedback_unknown": 0,
            "feedback_stale": 0,
            "revoked": 0,
            "reassigned": 0,
            "resent": 0,
        }

    # -- the application's side ------------------------------------------------------------------

    def submit(self, job: JobState, now: float) -> None:
        """Take ownership of a new job and send it to a node, or park it until one has room."""
        self.jobs[job.id] = job
        router = self.router
        node = router.pick(job) if not router.waiting else None
        if node is not None:
            self._assign(job, node, now)
        else:
            router.park(job)

    def cancel(self, job_id: str, now: float) -> None:
        """The application cancels a job: at once if no node holds it, else through its node."""
        job = self.jobs.get(job_id)
        if job is None:
            return
        owner = job.owner
        if owner is None:
            self.router.unpark(job)
            self._end_cancelled(job)
            return
        job.cancel = True
        self._cancelling[job_id] = job
        if owner.alive and owner.connected:
            self.port.send(owner.peer, P.Cancel([(job_id, job.asg)]))

    def pump(self, now: float) -> None:
        """Send waiting jobs to nodes that have room."""
        if self.router.waiting:
            for job, node in self.router.drain():
                self._assign(job, node, now)

    # -- assignment -------------------------------------------------------------------------------

    def _assign(self, job: JobState, node: NodeState, now: float) -> None:
        if job.asg:
            self.stats["reassigned"] += 1
        job.asg += 1  # a copy still queued for the previous owner carries the old number
        job.owner = node
        job.acked = False
        job.last_seq = 0
        job.sent_at = now
        self.router.charge(job, node)
        node.unacked[job.id] = job
        node.owned[job.id] = job
        self.port.send(node.peer, job.message(now))
        if job.cancel:
            self.port.send(node.peer, P.Cancel([(job.id, job.asg)]))

    def _unassign(self, job: JobState) -> None:
        """Detach the job from its owner: credit, unacknowledged and held lists."""
        owner = job.owner
        if owner is not None:
            self.router.release(job)
            owner.unacked.pop(job.id, None)
            owner.owned.pop(job.id, None)

    def take_back(self, job: JobState) -> None:
        """Undo the current assignment (the job goes back to waiting, or ends if cancelled)."""
        self._unassign(job)
        job.owner = None
        job.acked = False
        if job.cancel:
            self._end_cancelled(job)
        else:
            self.router.park(job, front=True)

    def _forget(self, job: JobState) -> None:
        self._unassign(job)
        self.jobs.pop(job.id, None)
        if job.cancel:
            self._cancelling.pop(job.id, None)

    def _end_cancelled(self, job: JobState) -> None:
        self._forget(job)
        self.port.cancelled(job)

    def current(self, node: NodeState, job_id: str, asg: int) -> JobState | None:
        """The job if ``(job_id, asg)`` is its current assignment, to ``node``; else None."""
        job = self.jobs.get(job_id)
        if job is not None and job.owner is node and job.asg == asg:
            return job
        return None

    def _revoke(self, node: NodeState, stale: list[P.Ref]) -> None:
        self.stats["revoked"] += len(stale)
        self.port.send(node.peer, P.Revoke(stale))

    # -- messages from nodes ----------------------------------------------------------------------

    def on_messages(self, name: str, peer: bytes, messages: list[P.Message], now: float) -> None:
        """Handle what one node sent (``name`` is its routing id)."""
        nodes = self.router.nodes
        node = nodes.get(name)
        handlers = self._handlers
        for msg in messages:
            if isinstance(msg, P.Hello):
                node = self._on_hello(name, peer, msg, now)
            elif node is None or not node.session:
                self._from_stranger(name, peer, msg, now)
            elif peer != node.peer:  # another session of this name: an old one, or a contender
                if isinstance(msg, P.Feedback):  # a real run's outcome all the same (fenced)
                    self._on_feedback(node, msg, peer, now)
            else:
                node.last_seen = now
                if not node.connected:
                    node.connected = True
                    self._resend(node, now, everything=True)
                handler = handlers.get(type(msg))
                if handler is not None:
                    handler(node, msg, peer, now)
                else:
                    log.warning(
                        "node %r sent a %s, which only a distributor sends; dropped",
                        name,
                        type(msg).__name__,
                    )
        self._end_batch(name, now)

    def _end_batch(self, name: str, now: float) -> None:
        """After a node's batch: acknowledge its feedback, then send out what has room."""
        if self._strangers:
            log.info(
                "left %d feedbacks from unknown node %r unacknowledged and asked it to say "
                "hello (sent to this distributor's predecessor?)",
                self._strangers,
                name,
            )
            self._strangers = 0
        if self._acks:
            for to, items in self._acks.items():
                self.port.send(to, P.FeedbackAck(items))
            self._acks = {}
        self.pump(now)

    def _on_hello(self, name: str, peer: bytes, hello: P.Hello, now: float) -> NodeState | None:
        """A node session says hello: if admitted, it gets again what it has not stored."""
        node = self.admission.hello(name, peer, hello, now)
        if node is None:
            return self.router.nodes.get(name)
        self._resend(node, now, everything=True)
        return node

    def _from_stranger(self, name: str, peer: bytes, msg: P.Message, now: float) -> None:
        """A message from a node session unknown here (we restarted). Feedback gets no ack (the
        node would drop it): the node says hello, learns of the restart, keeps the outcome."""
        if type(msg) is P.Feedback:
            self.stats["feedback_received"] += 1
            self.stats["feedback_unknown"] += 1
            self._strangers += 1
        if type(msg) is not P.Bye:
            self.admission.ask_hello(peer, now)

    def _on_stored(self, node: NodeState, msg: P.Stored, peer: bytes, now: float) -> None:
        stale: list[P.Ref] = []
        jobs = self.jobs
        unacked = node.unacked
        for job_id, asg in msg.items:
            job = jobs.get(job_id)
            if job is None or job.owner is not node or job.asg != asg:
                stale.append((job_id, asg))
                continue
            if not job.acked:
                job.acked = True
                unacked.pop(job_id, None)
                if job.deferred:
                    self.router.release(job)
        if stale:
            self._revoke(node, stale)

    def _on_feedback(self, node: NodeState, fb: P.Feedback, peer: bytes, now: float) -> None:
        acks = self._acks.get(peer)
        if acks is None:
            acks = self._acks[peer] = []
        acks.append([fb.id, fb.asg, fb.seq])
        stats = self.stats
        stats["feedback_received"] += 1
        job = self.jobs.get(fb.id)
        if job is None:
            stats["feedback_unknown"] += 1
            return
        if job.owner is not node or job.asg != fb.asg:
            stats["feedback_stale"] += 1  # never an outcome: the job is assigned elsewhere now
            if not fb.final:
                self._revoke(node, [(fb.id, fb.asg)])
            return
        if fb.seq <= job.last_seq:
            stats["feedback_duplicate"] += 1
            return
        job.last_seq = fb.seq
        if not job.acked:
            job.acked = True
            node.unacked.pop(job.id, None)
        if fb.final:
            self._forget(job)
        elif job.periodic and fb.outcome == P.SUCCESS:
            job.args = fb.args  # the next run's args, should the job move
        self.port.feedback(job, fb)

    def _on_progress(self, node: NodeState, msg: P.Progress, peer: bytes, now: float) -> None:
        job = self.current(node, msg.id, msg.asg)
        if job is not None:  # else a stale copy's, or a finished job's: dropped
            self.port.progress(job, msg)

    def _on_heartbeat(self, node: NodeState, hb: P.Heartbeat, peer: bytes, now: float) -> None:
        if hb.session != node.session or not node.alive:  # a gone node must hello and sync
            self.admission.ask_hello(node.peer, now)
            return
        if hb.stamp > node.echo:
            node.echo = hb.stamp
        if hb.capacity != node.capacity:
            node.capacity = max(1, hb.capacity)
        if node.accepting != hb.accepting:
            node.accepting = hb.accepting
            log.info("node %s %s new jobs", node.name, "takes" if hb.accepting else "does not take")

    def _on_parked(self, node: NodeState, msg: P.Parked, peer: bytes, now: float) -> None:
        for job_id, asg, attempt in msg.items:
            job = self.current(node, job_id, asg)
            if job is not None:
                job.attempt = attempt
                self.router.release(job)

    def _on_rejected(self, node: NodeState, msg: P.Rejected, peer: bytes, now: float) -> None:
        count = 0
        for job_id, asg in msg.items:
            job = self.current(node, job_id, asg)
            if job is not None and not job.acked:
                self.take_back(job)
                count += 1
        if count:
            log.warning(
                "node %s refused %d jobs (%r); routing them elsewhere",
                node.name,
                count,
                msg.reason[:200],
            )

    def _on_hand_back(self, node: NodeState, msg: P.HandBack, peer: bytes, now: float) -> None:
        acks: list[P.Ref] = []
        taken = 0
        for job_id, asg, attempt, delay in msg.items:
            acks.append((job_id, asg))
            job = self.current(node, job_id, asg)
            if job is None:
                continue
            job.handed_back(now + delay if delay > 0 else 0.0, attempt)  # due as a duration
            self.take_back(job)
            taken += 1
        self.port.send(node.peer, P.HandBackAck(acks))
        if taken:
            log.info(
                "node %s handed back %d jobs (%s); routing them elsewhere",
                node.name,
                taken,
                msg.reason[:200],
            )

    def _on_bye(self, node: NodeState, msg: P.Bye, peer: bytes, now: float) -> None:
        if msg.session != node.session:
            return
        node.left = True
        if self.stopping:  # the answer to our own bye: the node took our jobs as its own
            self.saying_bye.discard(node.name)
            node.presence = Presence.GONE
            return
        log.info("node %s stopped (%d jobs it kept for its restart)", node.name, len(node.owned))
        self._gone(node)

    # -- time -------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Every heartbeat interval: verdicts, heartbeats and re-sends."""
        for node, verdict in self.liveness.judge(now, self.router.nodes.values()):
            if verdict is Verdict.LOST:
                self._lost(node)
            else:
                self._gone(node)
        for node in self.router.nodes.values():
            if node.alive:
                self.port.send(node.peer, P.Heartbeat(self.session, True, node.echo, 0))
                if node.connected:
                    self._resend(node, now, everything=False)
        if self._cancelling:
            per_node: dict[NodeState, list[P.Ref]] = {}
            for job in self._cancelling.values():
                owner = job.owner
                if owner is not None and owner.alive and owner.connected:
                    per_node.setdefault(owner, []).append((job.id, job.asg))
            for owner, refs in per_node.items():
                self.port.send(owner.peer, P.Cancel(refs))
        self.pump(now)

    def _resend(self, node: NodeState, now: float, *, everything: bool) -> None:
        """Send again what ``node`` has not acknowledged: all of it, or what is older than rto."""
        unacked = node.unacked
        if not unacked:
            return
        limit = now - self.rto
        again: list[JobState] = []
        for job in unacked.values():
            if not everything and job.sent_at > limit:
                break
            again.append(job)
        for job in again:
            del unacked[job.id]
            unacked[job.id] = job  # oldest send first
            job.sent_at = now
            self.port.send(node.peer, job.message(now))
        self.stats["resent"] += len(again)

    def unreachable(self, peer: bytes) -> None:
        """A send to ``peer`` found no connection: hold its messages until it is heard again."""
        node = self.router.nodes.get(P.parse_routing_id(peer)[0])
        if node is not None and node.peer == peer:
            node.connected = False

    def revoked(self, peer: bytes) -> None:
        """``peer`` may no longer connect (its CURVE key was revoked): its node is gone now."""
        node = self.router.nodes.get(P.parse_routing_id(peer)[0])
        if node is not None and node.peer == peer and node.alive:
            log.warning(
                "node %s is no longer allowed; its unstored jobs go to other nodes", node.name
            )
            self._gone(node)

    def _gone(self, node: NodeState) -> None:
        was_up = node.alive
        node.presence = Presence.GONE
        moved = list(node.unacked.values())
        for job in moved:
            self.take_back(job)
        if was_up and not node.left:
            log.warning(
                "node %s declared gone (silent for %.1fs); %d unstored jobs go to other nodes",
                node.name,
                self.liveness.timeout,
                len(moved),
            )

    def _lost(self, node: NodeState) -> None:
        node.presence = Presence.LOST
        moved = list(node.owned.values())
        for job in moved:
            self.take_back(job)
        log.warning(
            "node %s declared lost (silent for %.1fs); the %d jobs it held go to other nodes",
            node.name,
            self.liveness.lost_after,
            len(moved),
        )

    # -- views ------------------------------------------------------------------------------------

    def bye(self) -> bool:
        """Say bye to every live node: the jobs they stored are theirs now (see the farewell
        module); :attr:`saying_bye` holds those yet to answer. False: nobody to tell."""
        if self.stopping:
            return False
        self.stopping = True
        for node in self.router.nodes.values():
            if node.alive:
                self.port.send(node.peer, P.Bye(self.session))
                self.saying_bye.add(node.name)
        return bool(self.saying_bye)

    def node_alive(self, name: str) -> bool:
        """Whether node ``name`` is up."""
        node = self.router.nodes.get(name)
        return node is not None and node.alive

    def held(self) -> int:
        """Jobs this distributor owns that no node has stored yet (waiting or unacknowledged)."""
        return self.router.waiting + sum(len(n.unacked) for n in self.router.nodes.values())
