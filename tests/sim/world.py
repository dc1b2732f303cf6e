"""A deterministic world for the delivery cores: fake time, an in-memory network, seeded faults.

The real :class:`DistributorCore` and :class:`NodeCore` objects run here unchanged; only their
ports are simulated. A simulated process is a driver port and nothing more: which job starts
when is the core's rule (:meth:`NodeCore.start_next`, :meth:`NodeCore.start_batch` for
write-ahead), as in the node driver. ``sim`` jobs are ``async`` (they take a slot and run for
their ``dur``); ``sim_def`` jobs are ``def`` jobs that run on the loop at once. Everything
that varies (latency, drops, duplicates, reordering, partitions, crashes, freezes, stops, job
outcomes) comes from one ``random.Random(seed)``, so a seed replays a whole run exactly.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reactor.config import Config
from reactor.core.distributor import DistributorCore
from reactor.core.gate import MemoryGate
from reactor.core.jobstate import JobState
from reactor.core.node import NodeCore
from reactor.jobs import record as R
from reactor.jobs.options import EnqueueOptions
from reactor.jobs.outcome import Attempt, Outcome
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobEntry
from reactor.node.write_ahead import MAX_AHEAD
from reactor.wire import protocol as P
from tests.sim.limits_watch import LimitWatch
from tests.sim.storage import Storage, StorageFaults

INTERVAL = 0.2
TIMEOUT = 1.0
LOST_AFTER = 3.0
#: How long a supervisor waits before starting a node again after it exited (NodeNameTaken).
SUPERVISOR_RESTART = 1.0
EPOCH = 1_800_000_000.0  # the simulated wall clock at time 0


async def _async_body(args: dict[str, Any]) -> None:
    """Never called: its kind (``async def``) is what the core reads."""


def _def_body(args: dict[str, Any]) -> None:
    """Never called: its kind (``def``) is what the core reads."""


#: The simulated node's jobs, as the core sees them (the bodies are simulated in Process).
KINDS = {"sim": JobEntry("sim", _async_body), "sim_def": JobEntry("sim_def", _def_body)}


class Clock:
    """Simulated time and the events scheduled on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._events, (max(when, self.now), next(self._seq), fn))

    def run_until(self, end: float, stop: Callable[[], bool] | None = None) -> None:
        events = self._events
        while events and events[0][0] <= end:
            when, _, fn = heapq.heappop(events)
            self.now = when
            fn()
            if stop is not None and stop():
                return
        self.now = max(self.now, end)


@dataclass
class Faults:
    """How hostile the network is in one run."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    latency: float = 0.002


class Network:
    """Messages between distributors and nodes, with latency and faults per direction."""

    def __init__(self, clock: Clock, rng: random.Random, faults: Faults) -> None:
        self.clock = clock
        self.rng = rng
        self.faults = faults
        self.cut: set[tuple[str, str]] = set()  # (distributor, node) pairs partitioned
        self._last: dict[tuple[str, str, str], float] = {}  # FIFO per direction
        self.sent = 0

    def deliver(self, src: str, dst: str, pair: tuple[str, str], fn: Callable[[], None]) -> None:
        rng, faults = self.rng, self.faults
        self.sent += 1
        if pair in self.cut or rng.random() < faults.drop:
            return
        delay = faults.latency * (0.5 + rng.random())
        lane = (src, dst, "")
        if rng.random() < faults.reorder:
            delay += rng.random() * 0.5  # overtaken by later messages
        else:
            delay = max(delay, self._last.get(lane, 0.0) - self.clock.now + 1e-6)
            self._last[lane] = self.clock.now + delay
        self.clock.at(self.clock.now + delay, fn)
        if rng.random() < faults.duplicate:
            self.clock.at(self.clock.now + delay + rng.random() * 0.3, fn)


_CODEC = P.Codec()


def frozen(msg: Any) -> Any:
    """The message as the other side decodes it: it crosses the real codec, so later changes
    to a list the sender keeps cannot reach it (as on a socket)."""
    messages, errors = _CODEC.decode(_CODEC.encode([msg]))
    assert not errors, errors
    return messages[0]


@dataclass
class Run:
    """What happened to one job, from the runner's and the application's side."""

    job: JobState
    spec: dict[str, Any]
    runs: list[tuple[str, int, str]] = field(default_factory=list)  # (node, attempt, outcome)
    outcomes: list[str] = field(default_factory=list)  # terminal outcomes the app saw
    feedbacks: int = 0
    cancel_asked: bool = False
    error: str | None = None  # the type name of the final failure's error


class SimDistributor:
    """A distributor core with a simulated port."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.session = f"{name}-s"
        config = Config(
            heartbeat_interval=INTERVAL, heartbeat_timeout=TIMEOUT, node_lost_after=LOST_AFTER
        )
        self.core = DistributorCore(self, address=name, session=self.session, config=config)
        self._ids = itertools.count(1)
        world.clock.at(INTERVAL, self._tick)

    def _tick(self) -> None:
        self.core.tick(self.world.clock.now)
        self.world.clock.at(self.world.clock.now + INTERVAL, self._tick)

    # port
    def send(self, peer: bytes, message: Any) -> None:
        name = P.parse_routing_id(peer)[0]
        msg = frozen(message)
        process = self.world.processes.get(peer)
        if process is None or not process.alive:  # no such connection (ZeroMQ)
            self.world.clock.at(self.world.clock.now, lambda: self.core.unreachable(peer))
            return
        self.world.net.deliver(
            self.name, name, (self.name, name), lambda: process.receive(self.name, msg)
        )

    def feedback(self, job: JobState, fb: P.Feedback) -> None:
        run = self.world.runs[job.id]
        run.feedbacks += 1
        if fb.final:
            run.error = fb.error[0] if fb.error else None
            outcome = {P.SUCCESS: "success", P.FAILURE: "failure"}.get(fb.outcome, "cancelled")
            run.outcomes.append(outcome)
            if self.world.on_outcome is not None:  # the flows workload (tests/sim/flows.py)
                self.world.on_outcome(job.id, outcome, fb.args)

    def cancelled(self, job: JobState) -> None:
        self.world.runs[job.id].outcomes.append("cancelled")
        if self.world.on_outcome is not None:
            self.world.on_outcome(job.id, "cancelled", None)

    # application
    def enqueue(
        self,
        spec: dict[str, Any],
        *,
        after: float = 0.0,
        period: float | None = None,
        node: str | None = None,
        not_node: str | None = None,
        priority: int = 0,
        max_attempt: int | None = None,
        inline: bool = False,
        flow: dict[str, Any] | None = None,
    ) -> str:
        job_id = f"{self.name}-{next(self._ids)}"
        now = self.world.clock.now
        name = "sim_def" if inline else "sim"
        # The same spec and checks as Distributor.enqueue: the wire options come from it.
        opts = EnqueueOptions(
            after=after or None,
            period=period,
            node=node,
            not_node=not_node,
            max_attempt=max_attempt,
            priority=priority,
            flow=flow,  # type: ignore[arg-type]
        )
        delay, at, options = opts.check()
        wire = P.new_job_wire(
            job_id, name, P.pack_args(spec), delay, at, period, False, EPOCH + now, options
        )
        job = JobState.from_wire(
            wire,
            None,
            node=node,
            not_node=not_node,
            due=now + after if after else 0.0,
            deferred=after > 0 or period is not None,
            periodic=period is not None,
            priority=priority,
        )
        self.world.runs[job_id] = Run(job, spec)
        self.core.submit(job, now)
        return job_id

    def cancel(self, job_id: str) -> None:
        self.world.runs[job_id].cancel_asked = True
        self.core.cancel(job_id, self.world.clock.now)


class Process:
    """One run of a node: its core, its timers and the jobs it is running.

    A *twin* is a second process started under a live node's name (a misconfiguration the
    distributor must refuse, or take as the node's restart once the first one is silent).
    """

    def __init__(self, node: SimNode, incarnation: int, *, twin: bool = False) -> None:
        self.node = node
        self.world = node.world
        self.twin = twin
        self.storage = Storage(False) if twin else node.storage
        self.alive = True
        self.frozen_until = 0.0
        self.session = f"{node.name}-{'twin' if twin else ''}{incarnation}"
        self.world.processes[P.routing_id(node.name, self.session)] = self
        config = Config(
            heartbeat_interval=INTERVAL,
            heartbeat_timeout=TIMEOUT,
            node_lost_after=LOST_AFTER,
            max_attempt=3,
            retry_multiplier=0.1,
            remove_failed_jobs=True,
            log_job_processing=False,
        )
        self.core = NodeCore(
            self,
            name=node.name,
            session=self.session,
            links=[d.name for d in self.world.distributors],
            config=config,
            capacity=node.capacity,
            job_names=list(KINDS),
            durable=node.storage.durable,
            where=f"sim {self.session}",
            kinds=KINDS.get,
            gate=self.world.gate,  # the simulation's limits store, shared by every node
        )
        self.pending_writes: list[tuple[str, str, JobRecord | None]] = []
        self.acks: list[tuple[str, list[JobRecord]]] = []
        self.flush_armed = False
        #: Durable: begun jobs whose attempts go with the next flush; then their bodies start.
        self.begun: list[tuple[JobRecord, JobEntry]] = []
        self.bodies: dict[str, int] = {}  # job id -> attempt, for bodies under way
        self.kicked = False
        self.timer_at = float("inf")
        now = self.world.clock.now
        records = self.storage.read_back()
        unfinished = [r for r in records if r.status in ("new", "in progress", "queued", "error")]
        self.core.resume(unfinished, now, EPOCH + now)
        self.core.started = True
        self._tick()

    def die(self) -> None:
        """The process is killed (a twin's end): its bodies end with it."""
        self.alive = False
        self.world.limit_watch.gone(self.session)

    # the loop
    def later(self, when: float, fn: Callable[[], None]) -> None:
        def run() -> None:
            if not self.alive:
                return
            if self.world.clock.now < self.frozen_until:
                self.world.clock.at(self.frozen_until, run)
                return
            fn()

        self.world.clock.at(when, run)

    def _tick(self) -> None:
        self.core.tick(self.world.clock.now)
        self.later(self.world.clock.now + INTERVAL, self._tick)
        if self.node.stopping and not self.twin and self.core.settled:
            self.node.finish_stop()

    def receive(self, dist: str, msg: Any) -> None:
        def handle() -> None:
            now = self.world.clock.now
            self.core.on_messages(dist, [msg], now, EPOCH + now)

        self.later(self.world.clock.now, handle)

    # port
    def send(self, link: str, message: Any) -> None:
        if not self.alive:
            return
        dist = self.world.dists[link]
        msg = frozen(message)
        peer = P.routing_id(self.node.name, self.session)
        self.world.net.deliver(
            self.node.name,
            link,
            (link, self.node.name),
            lambda: dist.core.on_messages(self.node.name, peer, [msg], self.world.clock.now),
        )

    def store(self, link: str, records: list[JobRecord]) -> bool:
        """Durable: written with the next batch, in order with every earlier write (as Redis
        storage coalesces them), and acknowledged once that batch is written."""
        if not self.storage.durable:
            return True
        for r in records:
            self.pending_writes.append(("add", r.id, r))
        self.acks.append((link, records))
        self._flush_soon()
        return False

    def write(self, record: JobRecord) -> None:
        self.pending_writes.append(("update", record.id, record))
        self._flush_soon()

    def remove(self, record: JobRecord) -> None:
        self.pending_writes.append(("remove", record.id, None))
        self._flush_soon()

    def _flush_soon(self) -> None:
        if not self.flush_armed:
            self.flush_armed = True
            self.later(self.world.clock.now + 0.002 + self.storage.flush_delay(), self._flush)

    def _flush(self) -> None:
        self.flush_armed = False
        writes, self.pending_writes = self.pending_writes, []
        acks, self.acks = self.acks, []
        storage = self.storage
        now = self.world.clock.now
        for kind, job_id, record in writes:
            if kind == "remove":
                storage.drop(job_id, now)
            elif kind == "add" or job_id in storage.records:
                assert record is not None
                storage.put(record, now)
        for link, records in acks:
            self.core.stored(link, records, self.world.clock.now)
        begun, self.begun = self.begun, []  # their attempts are stored: the bodies start
        for job, entry in begun:
            if self.core.written(job, self.world.clock.now):
                self._body(job, entry)
            else:
                self.kick()

    def exists(self, records: list[JobRecord]) -> list[bool] | None:
        if not self.storage.durable:
            return [True] * len(records)
        pending = {w[1]: w[0] for w in self.pending_writes}
        alive = [
            pending.get(r.id, "add" if r.id in self.storage.records else "remove") != "remove"
            for r in records
        ]
        if all(alive):
            return alive
        # As the driver does: a missing record with no destroy's tombstone was lost (the
        # simulation destroys nothing, so every missing record was), answered asynchronously.
        lost = [not ok for ok in alive]
        self.later(
            self.world.clock.now,
            lambda: self.core.timers_checked(records, alive, self.world.clock.now, lost),
        )
        return None

    def arm(self, due: float) -> None:
        if due < self.timer_at:
            self.timer_at = due
            self.later(due, self._fire)

    def _fire(self) -> None:
        if self.world.clock.now + 1e-9 < self.timer_at:
            return
        self.timer_at = float("inf")
        self.core.fire_timers(self.world.clock.now)

    def kick(self) -> None:
        if not self.kicked:
            self.kicked = True
            self.later(self.world.clock.now, self._run)

    def cancelled(self, job: JobRecord) -> None:
        pass

    def starting(self, job: JobRecord, wall: float) -> None:
        pass

    def unknown(self, job: JobRecord) -> str:
        return f"the simulated node has no job named {job.name!r}"

    def _run(self) -> None:
        """The driver's run loop: start what the core lets start (write-ahead when durable)."""
        self.kicked = False
        core = self.core
        now = self.world.clock.now
        if self.storage.durable:
            batch = core.start_batch(now, EPOCH + now, MAX_AHEAD - len(self.begun))
            for job, _ in batch:  # the attempts go with the next flush, then the bodies start
                self.write(job)
            self.begun += batch
            return
        while (started := core.start_next(now, EPOCH + now)) is not None:
            self._body(*started)

    def _body(self, job: JobRecord, entry: JobEntry) -> None:
        spec = P.unpack_args(job.args)
        self.world.limit_watch.started(self.session, job, self.world.clock.now)
        if not (entry.is_async or job.defer):
            self._done(job, spec, slot=False)  # a def job runs on the loop, there and then
            return
        duration = spec.get("dur", 0.01)
        attempt = self.bodies[job.id] = job.attempt
        self.later(
            self.world.clock.now + duration, lambda: self._done(job, spec, slot=True, of=attempt)
        )

    def interrupt(self, job: JobRecord) -> None:
        """A cancel reached a running attempt: an async body stops at its next await (a
        simulated millisecond later); a def body ran there and then, nothing reaches it."""
        attempt = self.bodies.get(job.id)
        if attempt is not None:
            self.later(self.world.clock.now + 0.001, lambda: self._stopped(job, attempt))

    def _stopped(self, job: JobRecord, attempt: int) -> None:
        if self.bodies.get(job.id) != attempt:
            return  # it ended first
        del self.bodies[job.id]
        self.world.limit_watch.ended(self.session, job)
        run = self.world.runs.get(job.id)
        if run is not None:
            run.runs.append((self.node.name, attempt, "cancelled"))
        args = {**P.unpack_args(job.args), "ran_on": self.node.name}
        self.core.finished(
            job,
            Attempt(Outcome.CANCELLED, args, None),
            self.world.clock.now,
            EPOCH + self.world.clock.now,
        )
        self.core.slot_freed()
        self.kick()

    def _done(self, job: JobRecord, spec: dict[str, Any], *, slot: bool, of: int = 0) -> None:
        now = self.world.clock.now
        if slot and self.bodies.get(job.id) != of:
            return  # interrupted by a cancel: it ended already
        self.bodies.pop(job.id, None)
        self.world.limit_watch.ended(self.session, job)
        run = self.world.runs.get(job.id)
        fails = spec.get("fail", 0)
        ok = job.attempt > fails
        if run is not None:
            run.runs.append((self.node.name, job.attempt, "ok" if ok else "error"))
        args = {**spec, "ran_on": self.node.name}
        if ok:
            attempt = Attempt(Outcome.DONE, args, None)
        else:
            attempt = Attempt(Outcome.FAILED, args, RuntimeError(f"attempt {job.attempt}"))
        self.core.finished(job, attempt, now, EPOCH + now)
        if slot:
            self.core.slot_freed()
        self.kick()

    def refused(self, link: str, kind: str, reason: str) -> None:
        self.world.refusals.append((self.node.name, self.session, kind))
        if self.twin or self.node.process is not self:
            self.alive = False  # the refused process exits
            return
        # The node's own process exits with NodeNameTaken; like every deployment's supervisor
        # (systemd's Restart=, a Kubernetes Deployment), the world starts it again a little
        # later, so a name held by a twin that then dies does not strand the node's stored jobs.
        node = self.node
        node.crash()
        self.world.clock.at(self.world.clock.now + SUPERVISOR_RESTART, node.restart)


class SimNode:
    """A node name: its storage outlives its processes."""

    def __init__(self, world: World, name: str, *, durable: bool, capacity: int) -> None:
        self.world = world
        self.name = name
        self.capacity = capacity
        index = len(world.nodes)
        self.storage = Storage(durable, world.storage_faults, seed=world.seed * 31 + index)
        self.process: Process | None = None
        self.incarnation = 0
        self.stopping = False
        self.restart_pending = False
        self.twins = 0
        self.start()

    def start(self) -> None:
        if self.stopping:  # start again once the stop is over
            self.restart_pending = True
            return
        if self.process is None:
            self.incarnation += 1
            self.stopping = False
            self.process = Process(self, self.incarnation)

    def restart(self) -> None:
        """A supervisor's restart: start the node again unless it is lost for good."""
        if self.name not in self.world.lost:
            self.start()

    def crash(self) -> None:
        self.stopping = False
        if self.process is not None:
            self.process.alive = False
            self.world.limit_watch.gone(self.process.session)
            for job_id, attempt in self.process.bodies.items():  # a crash ends these runs
                run = self.world.runs.get(job_id)
                if run is not None:
                    run.runs.append((self.name, attempt, "crash"))
            self._crash_unstored_outcomes(self.process)
            self.process = None
            if not self.storage.durable:
                self.storage.records.clear()

    def _crash_unstored_outcomes(self, process: Process) -> None:
        """An attempt ends when its outcome is stored (DESIGN §3, "an attempt's outcome"): a
        body that ended, but whose outcome the crash caught unwritten, crashed with the node.
        Its record still says in progress, so the restarted node counts the crash as that
        attempt's outcome (a retry, or a failure on the last attempt): the crash caused it."""
        if not self.storage.durable:
            return
        for job_id, record in self.storage.records.items():
            run = self.world.runs.get(job_id)
            if (
                record["status"] == R.IN_PROGRESS
                and job_id not in process.bodies
                and run is not None
                and run.runs
                and run.runs[-1] == (self.name, record["attempt"], "ok")
            ):
                run.runs.append((self.name, record["attempt"], "crash"))

    def start_twin(self, seconds: float) -> None:
        """Start a second process under this name, killed after ``seconds``."""
        self.twins += 1
        twin = Process(self, self.twins, twin=True)
        self.world.clock.at(self.world.clock.now + seconds, twin.die)

    def freeze(self, seconds: float) -> None:
        if self.process is not None:
            self.process.frozen_until = self.world.clock.now + seconds
            self.world.limit_watch.frozen(self.process.session, self.process.frozen_until)

    def stop(self) -> None:
        if self.process is not None and not self.stopping:
            self.stopping = True
            self.process.core.stop(self.world.clock.now)

    def finish_stop(self) -> None:
        if self.process is not None:
            self.process.core.bye()
            self.process._flush()
            self.crash()
        self.stopping = False
        if self.restart_pending:
            self.restart_pending = False
            self.start()


class World:
    """Distributors, nodes and the network of one seeded run."""

    def __init__(
        self,
        seed: int,
        *,
        distributors: int | None = None,
        nodes: list[tuple[str, bool, int]] | None = None,
        faults: Faults | None = None,
        storage_faults: StorageFaults | None = None,
    ) -> None:
        """A random cluster for ``seed``, or the one given (scripted scenarios).

        Args:
            seed: seeds every random choice of the run.
            distributors: how many distributors (random when None).
            nodes: (name, durable, capacity) of each node (random when None).
            faults: the network's faults (random when None).
            storage_faults: how durable storage misbehaves (drawn for the seed when None and
                the cluster is random; none for a scripted one).
        """
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = Clock()
        rng = self.rng
        if faults is None:
            faults = Faults(
                drop=rng.choice([0.0, 0.0, 0.01, 0.05]),
                duplicate=rng.choice([0.0, 0.0, 0.02]),
                reorder=rng.choice([0.0, 0.0, 0.0, 0.02]),
            )
        self.net = Network(self.clock, rng, faults)
        self.gate = MemoryGate(lease=LOST_AFTER, poll=0.5)
        self.limit_watch = LimitWatch(self.gate)
        self.runs: dict[str, Run] = {}
        #: Told each job's terminal outcomes (job id, outcome, final args), when set.
        self.on_outcome: Callable[[str, str, bytes | None], None] | None = None
        self.refusals: list[tuple[str, str, str]] = []
        self.lost: set[str] = set()
        self.processes: dict[bytes, Process] = {}
        count = rng.choice([1, 1, 2]) if distributors is None else distributors
        self.distributors = [SimDistributor(self, f"d{i}") for i in range(count)]
        self.dists = {d.name: d for d in self.distributors}
        if storage_faults is None:
            storage_faults = StorageFaults.draw(seed) if nodes is None else StorageFaults()
        self.storage_faults = storage_faults
        self.nodes: dict[str, SimNode] = {}
        if nodes is None:
            for i in range(rng.choice([2, 3, 3])):
                name = f"n{i}"
                self.nodes[name] = SimNode(
                    self, name, durable=rng.random() < 0.5, capacity=rng.choice([1, 2, 8])
                )
        else:
            for name, durable, capacity in nodes:
                self.nodes[name] = SimNode(self, name, durable=durable, capacity=capacity)
