"""What a node does once an attempt has ended: feedback, retries, rescheduling and retention.

A mixin of :class:`~reactor.node.Node`, kept apart so the node module holds the receiving,
scheduling and running of jobs, and this one the rules of the job lifecycle (DESIGN §5).
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Any

from reactor import protocol as P
from reactor import record as R
from reactor.chain import Attempt, Outcome
from reactor.config import Config
from reactor.errors import ProtocolError
from reactor.link import Link
from reactor.record import JobRecord
from reactor.storage import Storage
from reactor.timers import TimerQueue

log = logging.getLogger("reactor.node")


class OutcomeHandling:
    """Acts on attempt outcomes for a node (see :class:`~reactor.node.Node`)."""

    name: str
    config: Config
    storage: Storage | None
    jobs: dict[str, JobRecord]
    stats: dict[str, int]
    job_directory: Path
    _links: dict[str, Link]
    _timers: TimerQueue[JobRecord] | None

    def _schedule(self, job: JobRecord) -> None:
        raise NotImplementedError

    def _after(self, job: JobRecord, attempt: Attempt) -> None:
        """Act on an attempt's outcome: feedback, retry, reschedule, retention."""
        outcome = attempt.outcome
        args = attempt.args
        if outcome is Outcome.DONE:
            self._succeeded(job, args)
        elif outcome is Outcome.CANCELLED:
            self._log(job, "cancelled itself")
            self._send_feedback(job, P.SUCCESS, P.pack_result_args(args), None)
            self._retire(job, R.CANCELLED)
        else:
            assert attempt.error is not None
            self._failed(job, args, attempt.error, outcome is Outcome.FAILED_CANCELLED)

    def _succeeded(self, job: JobRecord, args: dict[str, Any]) -> None:
        self.stats["succeeded"] += 1
        packed = P.pack_result_args(args)
        if job.period is not None and not job.cancel_requested:
            args.pop("job_itself", None)
            job.args = P.pack_result_args(args)
            job.status = R.QUEUED
            job.attempt = 0
            job.run_at = time.time() + job.period
            job.seq += 1
            assert self.storage is not None and self._timers is not None
            self.storage.update(job)
            self._send_feedback(job, P.SUCCESS, packed, None, final=False, bump=False)
            job.timer = self._timers.add(job.run_at, job)
            self._log(job, f"complete; next run in {job.period:.3g}s")
            return
        if job.period is not None:  # cancelled by the application while it ran
            self._send_feedback(job, P.SUCCESS, packed, None, final=False)
            self._finish_cancelled(job)
            return
        self._log(job, "complete")
        self._send_feedback(job, P.SUCCESS, packed, None)
        self._retire(job, R.COMPLETE)

    def _failed(
        self, job: JobRecord, args: dict[str, Any], exc: BaseException, cancelled_in_errback: bool
    ) -> None:
        self.stats["failed"] += 1
        error = _error_triple(exc)
        job.failed_at = time.time()
        job.last_error = f"{error[0]}: {error[1]}" if error[1] else error[0]
        kept = {k: v for k, v in args.items() if k not in ("error", "job_itself")}
        job.args = P.pack_result_args(kept)
        if self.config["log_job_processing"]:
            log.warning(
                "job %s %r failed (attempt %d): %s", job.id, job.name, job.attempt, job.last_error
            )
        if cancelled_in_errback:
            self._fail_final(job, args, error, status=R.CANCELLED)
            return
        if job.cancel_requested:
            self._finish_cancelled(job)
            return
        if job.attempt >= int(self.config["max_attempt"]):
            self._fail_final(job, args, error)
            return
        delay = (
            job.period
            if job.period is not None
            else job.attempt * float(self.config["retry_multiplier"])
        )
        job.status = R.ERROR
        job.run_at = time.time() + delay
        assert self.storage is not None
        self.storage.update(job)
        if delay > 0:
            link = self._links.get(job.distributor)
            if link is not None and job.period is None:
                link.send(P.Release([job.id]))
        self._schedule(job)

    def _fail_final(
        self,
        job: JobRecord,
        args: dict[str, Any],
        error: tuple[str, str, str],
        *,
        status: str = R.FAILED,
    ) -> None:
        args = {k: v for k, v in args.items() if k != "error"}
        self._send_feedback(job, P.FAILURE, P.pack_result_args(args), error)
        self._retire(job, status)

    def _undecodable(self, job: JobRecord, exc: Exception) -> None:
        """The job's args do not decode: it can never run, so it fails at once."""
        job.failed_at = time.time()
        job.last_error = f"ProtocolError: {exc}"
        log.error(
            "job %s (%r) has undecodable args (%s): failed without running", job.id, job.name, exc
        )
        self._fail_final(job, {}, ("ProtocolError", f"the job's args do not decode: {exc}", ""))

    def _no_such_job(self, job: JobRecord) -> None:
        job.attempt += 1
        job.failed_at = time.time()
        message = (
            f"node {self.name!r} has no job named {job.name!r}; define it with "
            f"@job({job.name!r}) in a file under {str(self.job_directory)!r} and restart "
            "the node"
        )
        job.last_error = f"NoSuchJob: {message}"
        log.error("job %s: %s", job.id, message)
        self._fail_final(job, _args_or_empty(job), ("NoSuchJob", message, ""))

    def _finish_cancelled(self, job: JobRecord) -> None:
        self.stats["cancelled"] += 1
        self._log(job, "cancelled")
        self._send_feedback(job, P.CANCELLED, job.args, None)
        self._retire(job, R.CANCELLED)

    def _retire(self, job: JobRecord, status: str) -> None:
        """A job is finished: keep or remove its record as configured."""
        self.jobs.pop(job.id, None)
        job.status = status
        remove = {
            R.COMPLETE: "remove_done_jobs",
            R.CANCELLED: "remove_cancelled_jobs",
            R.FAILED: "remove_failed_jobs",
        }[status]
        assert self.storage is not None
        if self.config[remove]:
            self.storage.remove(job)
        else:
            self.storage.update(job)

    def _cancel(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            return
        job.cancel_requested = True
        if job.status == R.IN_PROGRESS:
            return  # it finishes this run, then stops
        if job.timer is not None:
            assert self._timers is not None
            self._timers.cancel(job.timer)
            job.timer = None
            self._finish_cancelled(job)
        # else it sits in the ready queue, where it is skipped and finished as cancelled

    def _send_feedback(
        self,
        job: JobRecord,
        outcome: int,
        args: bytes,
        error: tuple[str, str, str] | None,
        *,
        final: bool = True,
        bump: bool = True,
    ) -> None:
        if bump:
            job.seq += 1
        link = self._links.get(job.distributor)
        if link is None:
            log.warning(
                "job %s came from distributor %s, which this node does not connect to; "
                "its feedback is dropped",
                job.id,
                job.distributor,
            )
            return
        message = [P.FEEDBACK, job.id, job.seq, outcome, final, args, error]
        link.send_feedback(job.id, job.seq, message)

    def _log(self, job: JobRecord, what: str) -> None:
        if self.config["log_job_processing"]:
            log.info("job %s %r %s", job.id, job.name, what)


def _args_or_empty(job: JobRecord) -> dict[str, Any]:
    """The job's args for a feedback, or {} when they do not decode."""
    try:
        return P.unpack_args(job.args)
    except ProtocolError:
        return {}


def _error_triple(exc: BaseException) -> tuple[str, str, str]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return type(exc).__name__, str(exc), tb[-P.MAX_TEXT_LEN :]
