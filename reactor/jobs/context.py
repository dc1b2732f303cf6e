"""The running attempt as job code sees it: :func:`current_job` and its :class:`JobContext`.

The node's runner makes one context per attempt and makes it current (a context variable) for
the body, its callbacks and errbacks, in the loop, the attempt's task and a ``defer=True``
body's thread alike. ``cancelled`` turns True when a cancel reaches the running attempt (the
cooperative stop of ``def`` and ``defer=True`` jobs); ``progress()`` hands a report to the
runner, which coalesces it and sends it to the job's distributor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar, Token

from reactor.errors import OutsideJobError, ProgressError

#: Longest progress note kept (longer ones are cut): a note is a status line, not a payload.
MAX_NOTE_LEN = 1000

#: Takes one checked progress report (fraction, note); thread-safe (the runner's).
Reporter = Callable[[float, "str | None"], None]


def _drop(fraction: float, note: str | None) -> None:
    """The reporter of a context nobody listens to (tests, the eager distributor)."""


class JobContext:
    """One running attempt of a job.

    Attributes:
        id: the job's id.
        name: the job's name.
        attempt: this attempt's number (1 for the first).
        cancelled: True once a cancel reached this attempt: a ``def`` or ``defer=True`` job
            should stop soon (return or raise); it ends cancelled whatever it returns.
    """

    __slots__ = ("attempt", "cancelled", "id", "name", "reporter")

    def __init__(self, job_id: str, name: str, attempt: int, reporter: Reporter = _drop) -> None:
        self.id = job_id
        self.name = name
        self.attempt = attempt
        self.cancelled = False
        self.reporter = reporter

    def progress(self, fraction: float, note: str | None = None) -> None:
        """Report how far the attempt is: ``fraction`` in [0, 1] and an optional note.

        Safe from any thread. Reports are not acknowledged and are coalesced (about ten a
        second per job reach the application; the last one before the outcome always does).

        Raises:
            ProgressError: ``fraction`` is not a number in [0, 1], or ``note`` not a string.
        """
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not math.isfinite(fraction)
            or not 0 <= fraction <= 1
        ):
            raise ProgressError(
                f"progress() takes a fraction between 0 and 1 (0.5 is half done), got {fraction!r}"
            )
        if note is not None and type(note) is not str:
            raise ProgressError(f"progress() takes a note that is a string, got {note!r}")
        self.reporter(float(fraction), None if note is None else note[:MAX_NOTE_LEN])

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<JobContext {self.id} {self.name!r} attempt={self.attempt}{state}>"


_current: ContextVar[JobContext | None] = ContextVar("reactor_current_job", default=None)


def current_job() -> JobContext:
    """The attempt of a job running here (in its body, callbacks or errbacks).

    Raises:
        OutsideJobError: no attempt runs in this context.
    """
    ctx = _current.get()
    if ctx is None:
        raise OutsideJobError(
            "current_job() is only available while a job runs (in its body, callbacks or errbacks)"
        )
    return ctx


def enter(ctx: JobContext) -> Token[JobContext | None]:
    """Make ``ctx`` the current attempt; give the token to :func:`leave` afterwards."""
    return _current.set(ctx)


def leave(token: Token[JobContext | None]) -> None:
    """Restore what was current before :func:`enter`."""
    _current.reset(token)
