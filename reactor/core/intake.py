"""How jobs come to a node and leave it unrun: receipt, storing, adoption, cancel and revoke,
and resuming the records storage kept across a restart.

Every job is keyed by (id, assignment number): a re-sent job is acknowledged again, a newer
assignment of a job already held is adopted, and a stale copy is dropped when the distributor
says so (revoke).
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from reactor.core.lifecycle import args_or_empty, cron_problem
from reactor.core.link import LinkState
from reactor.jobs import record as R
from reactor.jobs.record import JobRecord
from reactor.wire import protocol as P

if TYPE_CHECKING:
    from reactor.core.node import NodeCore

log = logging.getLogger("reactor.node")


def new_record(m: P.Job, link: LinkState, node: str, now: float, wall: float) -> JobRecord:
    """The record of a job received from ``link``, with its monotonic due time (0: now)."""
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
        sys.intern(m.name),  # one string per job name, not one per job (memory per held job)
        m.args,
        attempt=m.attempt,
        run_at=run_at,
        period=m.period,
        make_after=m.delay,
        defer=m.defer,
        distributor=link.key,
        node=node,
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
    if m.limits is not None:
        record.limits = m.limits
    if m.tags is not None or m.trace is not None:
        record.tags = m.tags
        record.trace = (
            None if m.trace is None else dict(zip(m.trace[::2], m.trace[1::2], strict=True))
        )
    record.due = due
    return record


class Intake:
    """Jobs arriving, being stored, adopted, cancelled, revoked, forgotten and resumed."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.port = core.port
        self.jobs = core.jobs
        self.links = core.links
        self.queue = core.queue
        self.outcomes = core.outcomes

    def receive(self, link: LinkState, messages: list[P.Job], now: float, wall: float) -> None:
        """Jobs the distributor ``link`` assigned to this node: store the new ones."""
        core = self.core
        if not link.welcomed:
            return  # sent before our hello was answered: it comes again
        if not core.accepting:
            self.port.send(link.key, P.Heartbeat(core.session, False, now, core.capacity))
            why = "the node is stopping" if core.stopping else "the node cannot take jobs now"
            self.port.send(link.key, P.Rejected([(m.id, m.asg) for m in messages], why))
            return
        jobs = self.jobs
        fresh: list[JobRecord] = []
        again: list[P.Ref] = []
        for m in messages:
            job = jobs.get(m.id)
            if job is None:
                record = jobs[m.id] = new_record(m, link, core.name, now, wall)
                fresh.append(record)
                continue
            if m.asg > job.asg and job.dsession == link.dsession:
                self.adopt(job, m.asg, now)
            elif m.asg != job.asg:
                continue
            if job.phase != R.STORING:
                again.append((m.id, m.asg))  # a re-send: acknowledge it again
        if again:
            self.port.send(link.key, P.Stored(again))
        if fresh:
            core.stats["received"] += len(fresh)
            if self.port.store(link.key, fresh):
                self.stored(link.key, fresh, now)

    def adopt(self, job: JobRecord, asg: int, now: float) -> None:
        """The distributor gave us again a job we hold under an older assignment: take it."""
        old = job.asg
        job.asg = asg
        # Current again: a copy revoked while it ran (its node was lost, then came back and got
        # the job again) would drop the outcome of the run under way, and nothing would rerun it.
        job.revoked = False
        link = self.links.get(job.distributor)
        if job.phase == R.HANDING:
            if link is not None:
                link.handbacks.pop(job.id, None)
            self.queue.schedule(job, job.due, now)
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
                self.forget(job)
                continue
            refs.append((job.id, job.asg))
            if job.cancel_requested:
                self.outcomes.end(job, P.CANCELLED, job.args, None, R.CANCELLED, now)
                continue
            if job.cron is not None and (problem := cron_problem(job)):
                # a zone this node's system lacks: no other node is likelier to have it
                message = f"node {self.core.name}: {problem}"
                self.outcomes.fail(job, "ConfigError", message, now, job.enqueued_at)
                continue
            self.queue.schedule(job, job.due, now)
        if refs:
            self.port.send(key, P.Stored(refs))

    def store_failed(self, key: str, records: list[JobRecord], reason: str) -> None:
        """Storage could not write ``records``: the distributor routes them elsewhere."""
        for job in records:
            if self.jobs.get(job.id) is job:
                del self.jobs[job.id]
        self.port.send(key, P.Rejected([(j.id, j.asg) for j in records], reason))

    def on_cancel(self, link: LinkState, msg: P.Cancel | P.Revoke, now: float) -> None:
        """The distributor cancels jobs (they end as cancelled) or revokes stale copies."""
        if isinstance(msg, P.Cancel):
            for job_id, asg in msg.items:
                self.cancel(job_id, asg, now)
        else:
            for job_id, asg in msg.items:
                self.revoke(job_id, asg)

    def cancel(self, job_id: str, asg: int, now: float) -> None:
        """Cancel a job: a waiting one ends now, a ready one when it comes up, a storing one
        once stored, a running one is told to stop (it ends cancelled however its attempt
        ends; one that ended before the cancel came keeps its outcome)."""
        job = self.jobs.get(job_id)
        if job is None or job.asg != asg or job.cancel_requested:
            return
        job.cancel_requested = True
        if job.phase == R.WAITING:
            self.queue.unarm(job)
            self.outcomes.finish_cancelled(job, now)
        elif job.phase == R.RUNNING:
            job.interrupted = True
            self.port.interrupt(job)

    def cancel_running(self, job_id: str, asg: int | None) -> None:
        """Tell a running attempt of ``job_id`` (of assignment ``asg``, None: any) to stop, and
        nothing else: what a thread acting for a loop held by a def job may do (no storage, no
        messages). The cancel itself is handled again on the loop, where it finds this done."""
        job = self.jobs.get(job_id)
        if job is None or job.phase != R.RUNNING or job.cancel_requested:
            return
        if asg is None or job.asg == asg:
            job.cancel_requested = True
            job.interrupted = True
            self.port.interrupt(job)

    def cancel_here(self, job_id: str, now: float) -> bool:
        """Cancel the copy of ``job_id`` this node holds, whatever its assignment (the
        monitor's cancel of a stored job); False when the node holds none."""
        job = self.jobs.get(job_id)
        if job is None or job.revoked:
            return False
        self.cancel(job_id, job.asg, now)
        return True

    def revoke(self, job_id: str, asg: int) -> None:
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
            self.queue.unarm(job)
        if job.phase == R.DONE:  # its stored record already follows the retention settings
            if self.jobs.get(job_id) is job:
                del self.jobs[job_id]
        elif job.phase not in (R.RUNNING, R.STORING):
            self.forget(job)  # READY copies are skipped when they come up

    def forget(self, job: JobRecord) -> None:
        """Drop the job here and in storage (a slot granted to it and never used goes back:
        a READY copy revoked right after its grant held it until the lease lapsed)."""
        if job.permit is not None and job.phase != R.RUNNING:
            self.core.limits.release(job)
        if self.jobs.get(job.id) is job:
            del self.jobs[job.id]
            self.port.remove(job)

    def resume(self, records: list[JobRecord], now: float, wall: float) -> None:
        """Take back the records storage kept across a restart (DESIGN §3 "Durable nodes")."""
        for job in records:
            if job.id in self.jobs:
                continue
            self.jobs[job.id] = job
            # The stored seq may trail the last feedback sent (a record is written before the
            # feedback that follows it): a reused number would be dropped as a duplicate, and a
            # final outcome with it lost (simulation seed 142891).
            job.seq += 1
            due = now + (job.run_at - wall) if job.run_at > wall else 0.0
            if job.cancel_requested:  # the monitor cancelled it while the node was down
                self.outcomes.finish_cancelled(job, now)
                continue
            if job.status == R.IN_PROGRESS:
                if not self._crashed(job, now, wall):
                    continue
                due = 0.0
            if job.cron is not None and (problem := cron_problem(job)):
                message = f"node {self.core.name}: {problem}"
                self.outcomes.fail(job, "ConfigError", message, now, wall)
                continue
            self.queue.schedule(job, due, now)
        if records:
            log.info("node %s resumed %d stored jobs", self.core.name, len(records))

    def _crashed(self, job: JobRecord, now: float, wall: float) -> bool:
        """The node died while ``job`` ran: that run counts as an attempt (its number and "in
        progress" were written before the body started). Whether it runs again."""
        job.last_error = f"NodeCrashed: the node died during attempt {job.attempt}"
        job.failed_at = wall
        if job.attempt >= (limit := self.outcomes.policy(job).limit(job)):
            message = (
                f"the node died while the job was running, on attempt {job.attempt} of "
                f"max_attempt {limit} (a crash counts as an attempt); not "
                "run again, so that a job that kills its node cannot crash-loop it"
            )
            job.last_error = f"NodeCrashed: {message}"
            fields = job.log_fields(self.core.name)
            log.error("job %s (%r): %s", job.id, job.name, message, extra=fields)
            self.core.stats["failed"] += 1
            error = ("NodeCrashed", message, "")
            args = P.pack_result_args(args_or_empty(job))
            self.outcomes.end(job, P.FAILURE, args, error, R.FAILED, now)
            return False
        job.status = R.ERROR
        job.run_at = wall
        self.port.write(job)
        return True

    # -- a distributor session that restarted, stopped or went silent ----------------------------

    def orphan(self, link: LinkState, now: float, why: str) -> None:
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
        self.outcomes.keep_pending(link)
        link.feedback.clear()
        for job_id in list(link.handbacks):
            del link.handbacks[job_id]
            job = self.jobs.get(job_id)
            if job is not None and job.phase == R.HANDING:
                self.queue.schedule(job, job.due, now)
        for job in [
            j for j in self.jobs.values() if j.phase == R.DONE and j.distributor == link.key
        ]:
            self.forget(job)

    def take_over(self, link: LinkState, now: float, why: str) -> None:
        """The distributor said bye: the jobs its session left here are the node's own from
        now on. They run without its lease (nobody is left to reassign them), and their
        outcomes, which nobody will hear of, go to the result store (if any)."""
        self.orphan(link, now, why)
        for job in self.jobs.values():
            if job.distributor == link.key and job.dsession == link.dsession:
                job.dsession = ""
        link.lapse()
        self.queue.release_held()
        self.port.kick()

    def stand_in(self, link: LinkState, now: float) -> None:
        """The distributor has been silent past ``node_lost_after``: its jobs here run without
        its lease until it is heard again (:meth:`LinkState.runnable`), and their final outcomes
        go to the result store (if any) besides waiting for it. A SIGKILLed application's jobs
        that arrived just before it died (before the node's sync) or came due after the lease
        lapsed waited for it forever (found by tests/redis/test_results_outlive.py). Alive
        behind a partition, it has reassigned them by now, so they may run twice
        (at-least-once, DESIGN §3); when it is heard again the node's sync revokes the copies
        it reassigned."""
        link.given_up = link.lease_until
        self.outcomes.keep_pending(link)
        session = link.dsession
        count = sum(
            1 for j in self.jobs.values() if j.distributor == link.key and j.dsession == session
        )
        log.warning(
            "distributor %s silent past node_lost_after (%gs): node %s runs the %d jobs it left "
            "here without its lease until it is heard again",
            link.key,
            self.core.lost_after,
            self.core.name,
            count,
        )
        self.queue.release_held()
        self.port.kick()
