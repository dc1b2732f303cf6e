"""Turns a node's feedback into what the application sees: args, callables, the outcome, and
where outcomes are kept (result store) and counted (metrics)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from reactor.core.jobstate import JobState
from reactor.distributor.handle import JobHandle
from reactor.errors import JobCancelledError, JobFailed, ReactorError, RemoteError
from reactor.ops import trace_hooks
from reactor.ops.metrics import Metrics
from reactor.wire import protocol as P

if TYPE_CHECKING:
    from reactor.storage.results import ResultWriter

log = logging.getLogger("reactor.distributor")


def run_feedback(
    name: str, handle: JobHandle, fb: P.Feedback
) -> tuple[dict[str, Any], BaseException | None]:
    """Decode ``fb``'s args, run the matching feedback callable, and say how the job ended.

    An exception raised by the callable is logged and goes no further.

    Returns:
        The final args (with ``args["error"]`` a RemoteError on failure) and the error the
        handle's result should raise, or None on success.
    """
    try:
        args = P.unpack_args(fb.args)
    except Exception as exc:
        log.warning("feedback for job %s carried undecodable args (%s)", fb.id, exc)
        args = {}
    if fb.outcome == P.CANCELLED:
        cancelled = JobCancelledError(f"job {fb.id} ({name!r}) was cancelled")
        return args, cancelled if fb.final else None
    if fb.error is not None:
        args["error"] = RemoteError(*fb.error)
    success = fb.outcome == P.SUCCESS
    callable_ = handle.on_success if success else handle.on_error
    if callable_ is not None:
        try:
            callable_(args)
        except Exception:
            log.exception(
                "the %s feedback of job %s (%r) raised; the distributor goes on",
                "success" if success else "error",
                fb.id,
                name,
            )
    if success:
        return args, None
    remote = args.get("error")
    if not isinstance(remote, RemoteError):
        remote = RemoteError("Error", "the job failed")
    return args, JobFailed(fb.id, remote, args)


class Outcomes:
    """Where a distributor's jobs end: the core's ``feedback`` and ``cancelled`` port.

    Args:
        metrics: counts each final feedback with the time from enqueue (or due time) to it.
        results: keeps final outcomes for other processes (``result_store=``), or None.
    """

    def __init__(self, metrics: Metrics, results: ResultWriter | None) -> None:
        self.metrics = metrics
        self.results = results
        self.finished = 0  # final feedbacks: the dashboard's jobs per second

    def feedback(self, job: JobState, fb: P.Feedback) -> None:
        """Run the feedback callable; settle the handle on a final feedback."""
        traced = trace_hooks.feedback  # None unless reactor.tracing instrumented this process
        scope = None if traced is None else traced(job.name, job.message(job.sent_at), fb)
        args, error = run_feedback(job.name, job.handle, fb)
        if scope is not None:
            scope.end(error)
        if fb.final:
            if self.results is not None:
                self.results.record(job.id, job.name, fb)
            job.handle.resolve(args, error)
            self.finished += 1
            if not job.periodic:  # enqueue (or due time) to the end, as the application waits
                now = time.time()
                due = job.wall_due(now, time.monotonic())
                self.metrics.feedback_received(job.name, now - due)

    def cancelled(self, job: JobState) -> None:
        """The application's cancel ended the job (no node held it, or its node lost it)."""
        self.metrics.record_cancelled(job)
        if self.results is not None:
            self.results.record(job.id, job.name, None)
        job.handle.resolve(None, JobCancelledError(f"job {job.id} ({job.name!r}) was cancelled"))

    def progress(self, job: JobState, msg: P.Progress) -> None:
        """A progress report of a running attempt: kept on the handle, given to
        ``on_progress`` (whose exception is logged and goes no further)."""
        handle = job.handle
        handle.progress = (msg.fraction, msg.note)
        if handle.on_progress is not None:
            try:
                handle.on_progress(msg.fraction, msg.note)
            except Exception:
                log.exception(
                    "the progress feedback of job %s (%r) raised; the distributor goes on",
                    job.id,
                    job.name,
                )

    def stopped(self, jobs: list[JobState]) -> None:
        """The distributor stopped before ``jobs`` finished: their handles raise a ReactorError."""
        error = ReactorError("the distributor stopped before the job finished")
        for job in jobs:
            job.handle.resolve(None, error)
