"""The rules of a job's life after an attempt (DESIGN §5), as pure decisions.

:func:`after_attempt` reads a record, its :class:`RetryPolicy` and how its attempt ended and says
what happens next; the node core applies the decision (feedback, storage, timers). Nothing here
sends or stores.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass
from enum import Enum

from reactor.errors import ConfigError, ProtocolError
from reactor.jobs.backoff import Backoff
from reactor.jobs.cron import cron_schedule
from reactor.jobs.outcome import Outcome
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobEntry, JobRegistry
from reactor.wire import protocol as P


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one job's failed attempts are retried: the node's settings narrowed by ``@job``.

    An enqueue's ``max_attempt`` (kept on the record) wins over :attr:`max_attempt`.

    Attributes:
        max_attempt: attempts at most (``@job`` option, else ``config["max_attempt"]``).
        backoff: the wait before each retry (``@job`` option, else JobReactor's
            ``Backoff.linear(config["retry_multiplier"])``).
        retry_on: when not empty, only these exceptions are retried.
        give_up_on: these exceptions end the job at once (they win over ``retry_on``).
    """

    max_attempt: int
    backoff: Backoff
    retry_on: tuple[type[Exception], ...] = ()
    give_up_on: tuple[type[Exception], ...] = ()

    @classmethod
    def of(
        cls, entry: JobEntry | None, *, max_attempt: int, retry_multiplier: float
    ) -> RetryPolicy:
        """The policy of the job ``entry`` defines, on a node with these settings."""
        if entry is None:
            return cls(max_attempt, Backoff.linear(retry_multiplier))
        return cls(
            entry.max_attempt or max_attempt,
            entry.backoff or Backoff.linear(retry_multiplier),
            entry.retry_on,
            entry.give_up_on,
        )

    @classmethod
    def for_registry(
        cls, registry: JobRegistry, *, max_attempt: int, retry_multiplier: float
    ) -> dict[str, RetryPolicy]:
        """The policy of every job ``registry`` defines, by name."""
        return {
            name: cls.of(
                registry.get(name), max_attempt=max_attempt, retry_multiplier=retry_multiplier
            )
            for name in registry.names()
        }

    def limit(self, job: JobRecord) -> int:
        """How many attempts ``job`` gets: its enqueue's ``max_attempt``, else the policy's."""
        return job.max_attempt or self.max_attempt

    def retries(self, exc: BaseException | None) -> bool:
        """Whether a failure with ``exc`` may be retried at all (attempts left aside)."""
        if exc is None:
            return True
        if self.give_up_on and isinstance(exc, self.give_up_on):
            return False
        return not self.retry_on or isinstance(exc, self.retry_on)


class Next(Enum):
    """What follows an attempt."""

    SUCCEEDED = "succeeded"  # final success feedback; status complete
    SELF_CANCELLED = "self_cancelled"  # CancelJob in body/callback: final success, status cancelled
    ERRBACK_CANCELLED = "errback_cancelled"  # CancelJob in an errback: final error, cancelled
    AGAIN = "again"  # a periodic job succeeded: feedback that is not final, next run in `delay`
    STOPPED = "stopped"  # a periodic job cancelled while it ran: its run's feedback, then cancelled
    CANCELLED = "cancelled"  # cancelled by the application: final CANCELLED feedback
    RETRY = "retry"  # failed with attempts left: run again after `delay`
    FAILED = "failed"  # failed for good: final error feedback


def after_attempt(
    job: JobRecord,
    outcome: Outcome,
    policy: RetryPolicy,
    wall: float,
    error: BaseException | None = None,
    rng: random.Random | None = None,
) -> tuple[Next, float]:
    """What happens to ``job`` after an attempt that ended with ``outcome``, and after what delay.

    A job runs at most ``policy.limit(job)`` times, and a failure ``policy`` does not retry
    (``give_up_on``, ``retry_on``) ends it at once; the wait before retry k is
    ``policy.backoff.delay(k)``. A periodic job waits its period, a cron job until its next
    instant after ``wall`` (the attempt's end, epoch seconds), whether its run failed or not.
    For those, ``attempt`` counts consecutive failures and resets after a success (the caller
    resets it).
    """
    if job.interrupted:  # a cancel reached the attempt: whatever it did next, it stopped
        return Next.CANCELLED, 0.0
    if outcome is Outcome.DONE:
        if job.period is None and job.cron is None:
            return Next.SUCCEEDED, 0.0
        if job.cancel_requested:
            return Next.STOPPED, 0.0
        return Next.AGAIN, next_run(job, wall)
    if outcome is Outcome.CANCELLED:
        return Next.SELF_CANCELLED, 0.0
    if outcome is Outcome.FAILED_CANCELLED:
        return Next.ERRBACK_CANCELLED, 0.0
    if job.cancel_requested:
        return Next.CANCELLED, 0.0
    if job.attempt >= policy.limit(job) or not policy.retries(error):
        return Next.FAILED, 0.0
    if job.period is not None or job.cron is not None:
        return Next.RETRY, next_run(job, wall)
    return Next.RETRY, policy.backoff.delay(job.attempt, rng)


def next_run(job: JobRecord, wall: float) -> float:
    """Seconds from ``wall`` until a periodic or cron job's next run.

    A cron job's next instant is sought after its current one too (``run_at``, which the node
    keeps at the scheduled instant while the job runs), so a run that began a hair early on a
    monotonic timer never runs twice for one instant.
    """
    if job.cron is None:
        return job.period or 0.0
    schedule = cron_schedule(job.cron, job.tz or "UTC")
    return schedule.next_after(max(wall, job.run_at)) - wall


def cron_problem(job: JobRecord) -> str:
    """Why this node cannot hold ``job``'s cron schedule ("" when it can): a time zone its
    system lacks (no tzdata), or a record whose expression does not parse."""
    if job.cron is None:
        return ""
    try:
        cron_schedule(job.cron, job.tz or "UTC")
    except ConfigError as exc:
        return str(exc)
    return ""


def error_triple(exc: BaseException) -> tuple[str, str, str]:
    """An exception as (type name, message, formatted traceback) for an error feedback."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return type(exc).__name__, str(exc), tb[-P.MAX_TEXT_LEN :]


def args_or_empty(job: JobRecord) -> dict[str, object]:
    """The job's args for a feedback, or {} when they do not decode."""
    try:
        return P.unpack_args(job.args)
    except ProtocolError:
        return {}
