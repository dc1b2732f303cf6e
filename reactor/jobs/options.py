"""What an ``enqueue`` call asks for: its timing and routing options, checked in the caller."""

from __future__ import annotations

import datetime as dt
import math
import reprlib
from typing import Any

from reactor.errors import ConfigError
from reactor.jobs.cron import cron_schedule
from reactor.wire import protocol as P


def timing(after: float | None, run_at: dt.datetime | float | None) -> tuple[float, float]:
    """When a job is due: ``(delay, run_at)``.

    ``delay`` is a duration in seconds (0: at once), measured on monotonic clocks wherever the job
    waits, so a jump of the wall clock does not move it; ``run_at`` is a wall-clock instant in
    epoch seconds (0: none), re-checked against the wall clock (DESIGN §3 "Time").

    Raises:
        ValueError: a naive datetime, a negative or non-finite delay, or both after and run_at.
    """
    if after is not None and run_at is not None:
        raise ValueError("give either after= or run_at=, not both")
    if after is not None:
        if (
            isinstance(after, bool)
            or not isinstance(after, int | float)
            or not math.isfinite(after)
        ):
            raise ValueError(f"after= must be a number of seconds, not {after!r}")
        if after < 0:
            raise ValueError(f"after= must be >= 0 seconds, not {after}")
        return float(after), 0.0
    if run_at is None:
        return 0.0, 0.0
    if isinstance(run_at, dt.datetime):
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise ValueError(
                "run_at= got a naive datetime, which is ambiguous across machines; pass an aware "
                "one such as datetime.now(timezone.utc) + timedelta(seconds=30), or epoch seconds"
            )
        return 0.0, run_at.timestamp()
    if isinstance(run_at, bool) or not isinstance(run_at, int | float) or not math.isfinite(run_at):
        raise ValueError(f"run_at= must be an aware datetime or epoch seconds, not {run_at!r}")
    if run_at <= 0:
        raise ValueError(f"run_at= must be a positive epoch time, not {run_at!r}")
    return 0.0, float(run_at)


def check_options(
    name: Any,
    period: Any,
    node: Any,
    not_node: Any,
    on_success: Any,
    on_error: Any,
) -> None:
    """Refuse a bad job name, period, node name or feedback callable, saying what was wrong.

    Raises:
        TypeError: a name or callable of the wrong type.
        ValueError: a period that is not a positive number of seconds.
    """
    # Called on every enqueue: the common case (no period, no node names) costs a few compares.
    if type(name) is not str or not name or len(name) > P.MAX_NAME_LEN:
        raise TypeError(f"the job name must be a non-empty string, not {name!r}")
    if period is not None and (
        isinstance(period, bool)
        or not isinstance(period, int | float)
        or not math.isfinite(period)
        or period <= 0
    ):
        raise ValueError(f"period= must be a positive number of seconds, not {period!r}")
    if node is not None and (type(node) is not str or not node):
        raise TypeError(f"node= must be a node name, not {node!r}")
    if not_node is not None and (type(not_node) is not str or not not_node):
        raise TypeError(f"not_node= must be a node name, not {not_node!r}")
    if on_success is not None and not callable(on_success):
        raise TypeError("on_success= must be callable")
    if on_error is not None and not callable(on_error):
        raise TypeError("on_error= must be callable")


def check_job_options(
    *,
    timeout: Any,
    max_attempt: Any,
    cron: Any,
    tz: Any,
    priority: Any,
    after: Any,
    run_at: Any,
    period: Any,
) -> None:
    """Refuse bad per-job options (issue 13) at enqueue, saying what was wrong.

    Only called when one of them differs from its default, so a plain enqueue pays nothing.

    Raises:
        TypeError: an option of the wrong type.
        ValueError: ``timeout`` <= 0, ``max_attempt`` < 1, ``priority`` out of range, a bad
            cron expression or unknown time zone, ``tz`` without ``cron``, or ``cron`` together
            with ``after``/``run_at``/``period``.
    """
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"timeout= must be a number of seconds, not {timeout!r}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout= must be a finite number of seconds > 0, not {timeout!r}")
    if max_attempt is not None:
        if isinstance(max_attempt, bool) or not isinstance(max_attempt, int):
            raise TypeError(f"max_attempt= must be a whole number, not {max_attempt!r}")
        if not 1 <= max_attempt < 2**31:
            raise ValueError(f"max_attempt= must be between 1 and 2**31 - 1, not {max_attempt!r}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority= must be a whole number, not {priority!r}")
    if not P.MIN_PRIORITY <= priority <= P.MAX_PRIORITY:
        raise ValueError(
            f"priority= must be between {P.MIN_PRIORITY} and {P.MAX_PRIORITY} (higher runs "
            f"first), not {priority!r}"
        )
    if cron is None:
        if tz is not None:
            raise ValueError("tz= is the time zone of a cron= schedule; give cron= with it")
        return
    clash = [
        n for n, v in (("after", after), ("run_at", run_at), ("period", period)) if v is not None
    ]
    if clash:
        raise ValueError(
            f"cron= sets when the job runs; it cannot be combined with {clash[0]}= "
            "(drop one of them)"
        )
    if type(cron) is not str or len(cron) > P.MAX_CRON_LEN or not cron.isprintable():
        raise TypeError(
            f"cron= must be a cron expression string of at most {P.MAX_CRON_LEN} characters, "
            f"not {reprlib.repr(cron)}"
        )
    if tz is not None and (type(tz) is not str or len(tz) > P.MAX_TZ_LEN):
        raise TypeError(f"tz= must be an IANA time zone name such as 'Europe/Paris', not {tz!r}")
    try:
        cron_schedule(cron, "UTC" if tz is None else tz)
    except ConfigError as exc:
        raise ValueError(f"cron=/tz=: {exc}") from None
