"""Limits: whether a job that carries concurrency or rate limits may start now (issue 20).

The start rule (:class:`reactor.core.start.StartRule`) asks :meth:`Limits.admit` for a job with
claims (its ``@job`` limits and its enqueue's). The claims go to a :class:`Gate` all at once:
granted (the job starts and holds its slots until its attempt ends), refused (the job waits on
a timer, then asks again) or pending (a remote gate answers later through
:meth:`Limits.answered`). Per claim key at most one job of this node asks at a time; the others
wait behind it without timers, so a backlog of thousands costs one question per key, and a slot
freed here wakes the next waiter at once. Slots are leases: renewed by :meth:`Limits.tick`
while held, so a node that dies frees them within the lease.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, NamedTuple, Protocol

from reactor.jobs import record as R
from reactor.jobs.limits import SLOT, START, Claim, claims_of
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobEntry

if TYPE_CHECKING:
    from reactor.core.node import NodeCore

log = logging.getLogger("reactor.node")

#: Shortest wait before asking again (a refusal never makes a job spin).
MIN_RETRY = 0.005
#: The metrics' name of each claim kind.
KIND_NAMES = {SLOT: "concurrency", START: "rate"}


class Denied(NamedTuple):
    """A gate's refusal: the claim ``key`` that is full, and the seconds after which asking
    again may succeed (exact for a rate limit; a lease expiry or a poll for a slot)."""

    key: str
    retry: float


class Pending:
    """A gate's "the answer comes later" (see :meth:`Limits.answered`)."""


PENDING = Pending()

#: A gate's answer: None (granted), a refusal, or PENDING.
Verdict = Denied | Pending | None


class Gate(Protocol):
    """Where claims are granted: :class:`reactor.core.gate.MemoryGate` (one process, or a whole
    simulated cluster) or the node driver's Redis gate (every process sharing a store).
    ``lease``: seconds a slot stays held without a renewal."""

    lease: float

    def attach(self, limits: Limits) -> None:
        """The node's limits, told the answers that come later."""

    def acquire(self, holder: str, claims: list[Claim], now: float) -> Verdict:
        """Grant every claim to ``holder`` or none of them."""

    def release(self, holder: str, claims: list[Claim]) -> None:
        """``holder``'s attempt ended: free its slots."""

    def renew(self, holders: list[tuple[str, list[Claim]]], now: float) -> None:
        """Extend the leases of slots still held."""


class Limits:
    """One node's side of the limits (see the module docstring).

    Args:
        core: the node's core (its queue and port).
        gate: where claims are granted (held slots are renewed three times per lease).
    """

    def __init__(self, core: NodeCore, gate: Gate) -> None:
        self.core = core
        self.queue = core.queue
        self.gate = gate
        gate.attach(self)
        self.renew_every = max(gate.lease / 3.0, 0.001)
        self.renewed_at = -1e18
        self.askers: dict[str, JobRecord] = {}  # per claim key: the job asking (on a timer)
        self.waiters: dict[str, deque[JobRecord]] = {}  # per claim key: jobs behind the asker
        self.pending: dict[str, tuple[JobRecord, list[Claim]]] = {}  # asked, answer to come
        self.held: dict[str, JobRecord] = {}  # job id -> job holding its slots
        self.waited = 0  # how many times a job had to wait for a limit
        #: Jobs waiting for a limit now: job id -> (since, job name, limit kind).
        self.since: dict[str, tuple[float, str, str]] = {}
        #: Waits that ended in a grant, per (job name, limit kind): [count, seconds in all].
        self.waits: dict[tuple[str, str], list[float]] = {}
        #: The node has no limits_store of its own: it adopts the first a distributor names.
        self.adoptable = False

    def adopting(self) -> bool:
        """Whether a distributor's ``limits_store`` would be adopted now: the node has none of
        its own and holds or awaits nothing from its in-memory gate (else: at a later welcome)."""
        busy = self.held or self.pending or self.askers or self.waiters
        return self.adoptable and not busy

    def use_gate(self, gate: Gate | None) -> None:
        """Grant from ``gate`` from now on (a distributor's ``limits_store``; None: keep)."""
        if gate is None or not self.adopting():
            return
        self.adoptable = False
        self.gate = gate
        gate.attach(self)
        self.renew_every = max(gate.lease / 3.0, 0.001)
        log.info("node %s: limits held in the distributor's limits_store", self.core.name)

    def holder(self, job: JobRecord) -> str:
        """The name a job's slots are held under: one per node process (its session) and job,
        so a second process under the same name (a restart, a twin) never shares a slot."""
        return f"{self.core.name}/{self.core.session}/{job.id}"

    def admit(self, job: JobRecord, entry: JobEntry, now: float) -> bool:
        """Whether ``job`` may start now; if not, it waits (see the module docstring)."""
        if job.permit is not None:
            return True
        claims = claims_of(entry.claims, job.limits)
        if not claims:
            return True  # a fair_key alone
        for claim in claims:
            asker = self.askers.get(claim.key)
            if asker is not None and asker is not job:
                self._queue_behind(job, claim, now)
                return False
        verdict = self.gate.acquire(self.holder(job), claims, now)
        if verdict is None:
            self._granted(job, claims, now)
            return True
        if isinstance(verdict, Pending):
            for claim in claims:
                self.askers[claim.key] = job
            self.pending[job.id] = (job, claims)
            job.phase = R.WAITING
            return False
        self._denied(job, claims, verdict, now)
        return False

    def answered(self, job_id: str, verdict: Verdict, now: float) -> None:
        """A remote gate answered the question :meth:`admit` left pending."""
        asked = self.pending.pop(job_id, None)
        if asked is None:
            return
        job, claims = asked
        if job.phase != R.WAITING or job.revoked or job.timer is not None:
            # Handed back, cancelled or forgotten meanwhile: give back what was granted.
            if verdict is None:
                self.gate.release(self.holder(job), claims)
            self._unask(job, claims)
            return
        if verdict is None:
            self._granted(job, claims, now)
            job.phase = R.READY
            self.queue.make_ready(job, front=True)
            self.core.port.kick()
            return
        if isinstance(verdict, Pending):  # no answer is not a yes: ask again later
            verdict = Denied(claims[0].key, 1.0)
        self._denied(job, claims, verdict, now)

    def release(self, job: JobRecord) -> None:
        """``job``'s attempt ended (or will not start): free its slots, wake who waits for them."""
        claims = job.permit
        job.permit = None
        self.held.pop(job.id, None)
        if not isinstance(claims, list):
            return
        slots = [c for c in claims if c.kind == SLOT]
        if slots:
            self.gate.release(self.holder(job), slots)
            for claim in slots:
                asker = self.askers.get(claim.key)
                if asker is not None and asker.id not in self.pending:
                    self._wake(asker)  # ask again now rather than at its timer
                elif asker is None:
                    self._wake_next(claim.key)

    def released(self, key: str) -> None:
        """A slot of ``key`` was freed elsewhere (a remote gate heard it): its asker on this
        node asks again now rather than at its timer."""
        asker = self.askers.get(key)
        if asker is not None and asker.id not in self.pending and asker.timer is not None:
            self._wake(asker)

    def tick(self, now: float) -> None:
        """Renew the leases of held slots; settle holders and askers that went away."""
        # A granted job revoked or forgotten before it started never starts (its phase stays
        # READY); one revoked while running keeps its slots until its body ends.
        for job in [
            j
            for j in self.held.values()
            if j.phase not in (R.RUNNING, R.READY) or (j.phase == R.READY and not self._alive(j))
        ]:
            self.release(job)
        for key, asker in list(self.askers.items()):
            if (
                not self._alive(asker) or asker.phase != R.WAITING
            ) and asker.id not in self.pending:
                del self.askers[key]
                self._wake_next(key)
        jobs = self.core.jobs
        for job_id in [i for i in self.since if i not in jobs or jobs[i].phase > R.READY]:
            del self.since[job_id]  # cancelled, handed back or gone while it waited
        if self.held and now - self.renewed_at >= self.renew_every:
            self.renewed_at = now
            holders = []
            for job in self.held.values():
                if isinstance(job.permit, list):
                    slots = [c for c in job.permit if c.kind == SLOT]
                    if slots:
                        holders.append((self.holder(job), slots))
            if holders:
                self.gate.renew(holders, now)

    def waiting_by_name(self) -> dict[tuple[str, str], int]:
        """How many jobs wait for a limit now, per (job name, limit kind): for the gauge, read
        from the metrics server's thread (one C-level copy of the dict)."""
        counts: dict[tuple[str, str], int] = {}
        for _, name, kind in list(self.since.values()):
            counts[name, kind] = counts.get((name, kind), 0) + 1
        return counts

    def waiting(self) -> dict[str, int]:
        """How many jobs wait for each limit key (askers included), for metrics and views."""
        counts = {key: len(q) for key, q in self.waiters.items() if q}
        for key in self.askers:
            counts[key] = counts.get(key, 0) + 1
        return counts

    # -- the parts ------------------------------------------------------------------------------

    def _granted(self, job: JobRecord, claims: list[Claim], now: float) -> None:
        began = self.since.pop(job.id, None)
        if began is not None:
            tally = self.waits.get(began[1:])
            if tally is None:
                tally = self.waits[began[1:]] = [0, 0.0]
            tally[0] += 1
            tally[1] += now - began[0]
        job.permit = claims
        self.held[job.id] = job
        self._unask(job, claims)

    def _unask(self, job: JobRecord, claims: list[Claim]) -> None:
        """``job`` no longer asks on its claims' keys: the next waiter of each may ask (after a
        grant there may be room for more)."""
        for claim in claims:
            asker = self.askers.get(claim.key)
            if asker is job:
                del self.askers[claim.key]
            if asker is None or asker is job:
                self._wake_next(claim.key)

    def _denied(self, job: JobRecord, claims: list[Claim], denied: Denied, now: float) -> None:
        self.waited += 1
        kind = next((c.kind for c in claims if c.key == denied.key), SLOT)
        self.since.setdefault(job.id, (now, job.name, KIND_NAMES[kind]))
        for claim in claims:
            if claim.key != denied.key and self.askers.get(claim.key) is job:
                del self.askers[claim.key]
                self._wake_next(claim.key)
        self.askers[denied.key] = job
        self.queue.schedule(job, now + max(denied.retry, MIN_RETRY), now)

    def _queue_behind(self, job: JobRecord, claim: Claim, now: float) -> None:
        """``job`` waits behind the asker of ``claim``'s key; it gives up asking on its other
        keys (two jobs each asking on one key and waiting behind the other would wait forever)."""
        for key in [k for k, asker in self.askers.items() if asker is job]:
            del self.askers[key]
            self._wake_next(key)
        self.waited += 1
        self.since.setdefault(job.id, (now, job.name, KIND_NAMES[claim.kind]))
        job.phase = R.WAITING
        waiters = self.waiters.get(claim.key)
        if waiters is None:
            waiters = self.waiters[claim.key] = deque()
        waiters.append(job)

    def _wake_next(self, key: str) -> None:
        """The first job still waiting behind ``key`` goes back to the run queue (to ask)."""
        waiters = self.waiters.get(key)
        while waiters:
            job = waiters.popleft()
            if (
                job.phase == R.WAITING
                and job.timer is None
                and job.id not in self.pending
                and self._alive(job)
            ):
                self._wake(job)
                break
        if waiters is not None and not waiters:
            del self.waiters[key]

    def _alive(self, job: JobRecord) -> bool:
        """Whether ``job`` is still this node's: a copy revoked or forgotten while it waited
        keeps its WAITING phase, and as a key's asker it held every job behind it forever."""
        return not job.revoked and self.core.jobs.get(job.id) is job

    def _wake(self, job: JobRecord) -> None:
        if job.timer is not None:
            self.queue.unarm(job)
        job.phase = R.READY
        self.queue.make_ready(job, front=True)
        self.core.port.kick()
