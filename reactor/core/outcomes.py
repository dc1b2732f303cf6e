"""What becomes of a job after it ran, failed to start, or was cancelled; feedback; hand-back.

:class:`Outcomes` applies the lifecycle rules (DESIGN §5) to an ended attempt, ends jobs with
their final status and retention, keeps each feedback message until its distributor acknowledges
it, and hands jobs that have not started back to their distributor.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from reactor.core.lifecycle import Next, RetryPolicy, after_attempt, args_or_empty, error_triple
from reactor.core.link import LinkState
from reactor.jobs import record as R
from reactor.jobs.outcome import Attempt
from reactor.jobs.record import JobRecord
from reactor.wire import protocol as P

if TYPE_CHECKING:
    from reactor.core.node import NodeCore

log = logging.getLogger("reactor.node")

#: Characters of a failed attempt's traceback kept in its record's ``last_error`` (the tail).
TRACEBACK_KEPT = 8192

_RETENTION = {
    R.COMPLETE: "remove_done_jobs",
    R.CANCELLED: "remove_cancelled_jobs",
    R.FAILED: "remove_failed_jobs",
}


class Outcomes:
    """Ended attempts, final states, feedback and hand-back of one node."""

    def __init__(
        self,
        core: NodeCore,
        *,
        policies: Mapping[str, RetryPolicy] | None,
        rng: random.Random | None,
    ) -> None:
        self.core = core
        self.port = core.port
        self.links = core.links
        self.jobs = core.jobs
        self.stats = core.stats
        self.config = core.config
        self.queue = core.queue
        self.start = core.start
        #: Each job's retry policy by name (from its ``@job``); others get the node's settings.
        self.policies = dict(policies or {})
        self.default_policy = RetryPolicy.of(
            None,
            max_attempt=int(core.config["max_attempt"]),
            retry_multiplier=float(core.config["retry_multiplier"]),
        )
        self.rng = rng  # the jitter source (None: the random module's)
        #: config["log_job_processing"], read once: checked for every job on the hot path.
        self.log_processing = bool(core.config["log_job_processing"])
        #: Per final status, whether its record is removed (config["remove_*_jobs"], read once).
        self.removes = {status: bool(core.config[key]) for status, key in _RETENTION.items()}

    def policy(self, job: JobRecord) -> RetryPolicy:
        """The retry policy of ``job``'s name on this node."""
        return self.policies.get(job.name, self.default_policy)

    def finished(self, job: JobRecord, attempt: Attempt, now: float, wall: float) -> None:
        """An attempt ended: apply the job's lifecycle rules (DESIGN §5)."""
        self.start.running -= 1
        if job.permit is not None:
            self.core.limits.release(job)
        if job.revoked:
            self.core.intake.forget(job)
            return
        policy = self.policies.get(job.name, self.default_policy)  # not self.policy(): hot
        nxt, delay = after_attempt(job, attempt.outcome, policy, wall, attempt.error, self.rng)
        args = attempt.args
        succeeded = nxt is Next.SUCCEEDED or nxt is Next.AGAIN
        if succeeded and self.log_processing and log.isEnabledFor(logging.INFO):
            log.info(
                "job %s %r succeeded (attempt %d)",
                job.id,
                job.name,
                job.attempt,
                extra=job.log_fields(self.core.name),
            )
        if nxt is Next.SUCCEEDED:
            self.stats["succeeded"] += 1
            self.end(job, P.SUCCESS, P.pack_result_args(args), None, R.COMPLETE, now)
        elif nxt is Next.AGAIN:
            self.stats["succeeded"] += 1
            packed = P.pack_result_args(args)
            args.pop("job_itself", None)
            job.args = P.pack_result_args(args)
            job.status = R.QUEUED
            job.attempt = 0
            job.run_at = wall + delay
            self.port.write(job)
            self.feedback(job, P.SUCCESS, packed, None, final=False, now=now)
            self.queue.schedule(job, now + delay, now)
        elif nxt is Next.STOPPED:
            self.feedback(job, P.SUCCESS, P.pack_result_args(args), None, final=False, now=now)
            self.finish_cancelled(job, now, ran=True)
        elif job.interrupted:
            self._interrupted(job, now)
        elif nxt is Next.SELF_CANCELLED:
            self.end(job, P.SUCCESS, P.pack_result_args(args), None, R.CANCELLED, now)
        else:
            assert attempt.error is not None
            self._failed(job, nxt, delay, args, attempt.error, now, wall)

    def _interrupted(self, job: JobRecord, now: float) -> None:
        """The attempt a cancel reached has ended: the job ends cancelled (no retry)."""
        if self.log_processing:
            fields = job.log_fields(self.core.name)
            log.info("job %s %r cancelled while running", job.id, job.name, extra=fields)
        self.finish_cancelled(job, now, ran=True)

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
        if self.log_processing:
            then = f"retrying in {delay:.1f}s" if nxt is Next.RETRY else "no retry"
            log.warning(
                "job %s %r failed (attempt %d), %s: %s",
                job.id,
                job.name,
                job.attempt,
                then,
                summary,
                extra=job.log_fields(self.core.name),
            )
        if nxt is Next.CANCELLED:
            self.finish_cancelled(job, now, ran=True)
            return
        if nxt is not Next.RETRY:
            status = R.CANCELLED if nxt is Next.ERRBACK_CANCELLED else R.FAILED
            self.end(job, P.FAILURE, P.pack_result_args(kept), error, status, now)
            return
        job.status = R.ERROR
        job.run_at = wall + delay
        self.port.write(job)
        if delay > 0 and job.period is None and job.cron is None:
            link = self.handable(job)
            if link is not None:
                self.port.send(link.key, P.Parked([(job.id, job.asg, job.attempt)]))
        self.queue.schedule(job, now + delay if delay > 0 else 0.0, now)

    def fail(self, job: JobRecord, type_name: str, message: str, now: float, wall: float) -> None:
        """End a job that cannot run (unknown name, undecodable args): error feedback, no retry."""
        if job.phase == R.RUNNING:
            self.start.running -= 1
        if job.permit is not None:
            self.core.limits.release(job)
        job.failed_at = wall
        job.last_error = f"{type_name}: {message}"
        log.error(
            "job %s (%r): %s", job.id, job.name, message, extra=job.log_fields(self.core.name)
        )
        args = P.pack_result_args(args_or_empty(job))
        self.end(job, P.FAILURE, args, (type_name, message, ""), R.FAILED, now)

    def finish_cancelled(
        self, job: JobRecord, now: float, *, deleted: bool = False, ran: bool = False
    ) -> None:
        """End a job as cancelled (``deleted``: its record is gone already; ``ran``: at the
        end of an attempt, which the driver counts by the job's final status)."""
        self.stats["cancelled"] += 1
        if not ran:
            self.port.cancelled(job)
        self.end(job, P.CANCELLED, job.args, None, R.CANCELLED, now, deleted=deleted)

    def end(
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
        elif self.removes[status]:
            self.port.remove(job)
        else:
            self.port.write(job)
        self.feedback(job, outcome, args, error, final=True, now=now)

    def feedback(
        self,
        job: JobRecord,
        outcome: int,
        args: bytes,
        error: tuple[str, str, str] | None,
        *,
        final: bool,
        now: float,
    ) -> None:
        """Tell the job's distributor, and keep the message until it is acknowledged."""
        job.seq += 1
        message = P.feedback_wire(job.id, job.asg, job.seq, outcome, final, args, error)
        link = self.links.get(job.distributor)
        if link is None or (link.dsession and job.dsession != link.dsession):
            if final:  # nobody to tell: an orphan
                self.keep(job, message)
                if self.jobs.get(job.id) is job:
                    del self.jobs[job.id]
            return
        key = (job.id, job.asg, job.seq)
        link.feedback[key] = [message, now]
        if final:
            job.phase = R.DONE
            job.final_key = key
            # Written through (SET NX; the distributor's own write, which overwrites, has the
            # last word): kept only until its ack, an outcome died with a node killed before
            # the distributor, already gone, was missed (the nemesis's Redis node SIGKILLed
            # just after finishing the job of a SIGKILLed application).
            self.keep(job, message)
        if link.welcomed:
            self.port.send(link.key, message)

    # -- outcomes their distributor may never hear of ----------------------------------------------

    def keep(self, job: JobRecord, message: list[Any]) -> None:
        """Keep a final outcome in the result store (when the node has one): its distributor
        is silent, restarted or gone, and may never hear of it (issue 18: a result outlives the
        process that enqueued the job). Once per job; the message still awaits its ack."""
        if self.core.keeps_results and not job.result_kept:
            job.result_kept = True
            self.port.keep_result(job.name, message)

    def keep_pending(self, link: LinkState) -> None:
        """Keep every final outcome still unacknowledged by ``link``'s distributor."""
        if not self.core.keeps_results:
            return
        for entry in link.feedback.values():
            message = entry[0]
            if message[P.FEEDBACK_FINAL]:
                job = self.jobs.get(message[P.FEEDBACK_ID])
                if job is not None:
                    self.keep(job, message)

    # -- handing back -----------------------------------------------------------------------------

    def handable(self, job: JobRecord) -> LinkState | None:
        """The link a job can be handed back over, if its distributor is current and welcomed."""
        link = self.links.get(job.distributor)
        if link is None or not link.welcomed or job.dsession != link.dsession:
            return None
        return link

    def hand_back(self, jobs: list[JobRecord], reason: str, now: float) -> int:
        """Give ``jobs`` back to their distributors (those that can take them); how many."""
        per_link: dict[str, list[Any]] = {}
        for job in jobs:
            link = self.handable(job)
            if link is None:
                continue
            if job.phase == R.WAITING:
                self.queue.unarm(job)
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
        due = self.queue.take_due()
        count = self.hand_back(due, reason, now)
        self.queue.requeue(due)
        return count
