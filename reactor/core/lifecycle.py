"""The rules of a job's life after an attempt (DESIGN §5), as pure decisions.

:func:`after_attempt` reads a record and how its attempt ended and says what happens next; the
node core applies the decision (feedback, storage, timers). Nothing here sends or stores.
"""

from __future__ import annotations

import traceback
from enum import Enum

from reactor import protocol as P
from reactor.chain import Outcome
from reactor.errors import ProtocolError
from reactor.record import JobRecord


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
    job: JobRecord, outcome: Outcome, *, max_attempt: int, retry_multiplier: float
) -> tuple[Next, float]:
    """What happens to ``job`` after an attempt that ended with ``outcome``, and after what delay.

    A job runs at most ``max_attempt`` times; the wait before retry k is ``k * retry_multiplier``
    seconds (a periodic job waits its period). For a periodic job ``attempt`` counts consecutive
    failures and resets after a success (the caller resets it).
    """
    if outcome is Outcome.DONE:
        if job.period is None:
            return Next.SUCCEEDED, 0.0
        if job.cancel_requested:
            return Next.STOPPED, 0.0
        return Next.AGAIN, job.period
    if outcome is Outcome.CANCELLED:
        return Next.SELF_CANCELLED, 0.0
    if outcome is Outcome.FAILED_CANCELLED:
        return Next.ERRBACK_CANCELLED, 0.0
    if job.cancel_requested:
        return Next.CANCELLED, 0.0
    if job.attempt >= max_attempt:
        return Next.FAILED, 0.0
    delay = job.period if job.period is not None else job.attempt * retry_multiplier
    return Next.RETRY, delay


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
