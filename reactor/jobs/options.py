"""What an ``enqueue`` call asks for: :class:`EnqueueOptions`, every option with its default and
its check, built once per enqueue and passed down from the facade to the distributor."""

from __future__ import annotations

import datetime as dt
import functools
import math
import reprlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from reactor.errors import ConfigError
from reactor.jobs.cron import cron_schedule
from reactor.jobs.limits import FlowOptions as FlowOptions  # re-exported for the enqueues
from reactor.jobs.limits import limits_wire
from reactor.wire import protocol as P

#: A feedback callable: called with the job's final (or periodic run's) args.
Feedback = Callable[[dict[str, Any]], Any]
#: A progress callable: called with ``(fraction, note)`` as the running attempt reports them.
ProgressFeedback = Callable[[float, "str | None"], Any]

#: The longest ``unique_key`` (it becomes part of a Redis key).
MAX_KEY_LEN = 1024


class EnqueueOptions(NamedTuple):
    """The options of one enqueue, checked in the caller (see ``Distributor.enqueue``).

    Immutable and a tuple, so building one costs a fraction of a microsecond, and comparing
    all but its first two fields (the feedback callables, given with most enqueues) with
    :data:`ROUTINE` tells at once whether the enqueue needs more than the fast path. Adding an
    enqueue option means a field here (with its check in :meth:`check`), the keyword on
    ``Distributor.enqueue`` and ``JR.enqueue``, and the code that uses it.
    """

    on_success: Feedback | None = None
    on_error: Feedback | None = None
    after: float | None = None
    run_at: dt.datetime | float | None = None
    period: float | None = None
    defer: bool = False
    node: str | None = None
    not_node: str | None = None
    timeout: float | None = None
    max_attempt: int | None = None
    cron: str | None = None
    tz: str | None = None
    priority: int = 0
    unique_key: str | None = None
    unique_for: float | None = None
    tags: list[str] | tuple[str, ...] | None = None
    trace: dict[str, str] | None = None
    on_progress: ProgressFeedback | None = None
    #: The flow-control keywords (``concurrency_key=`` ...; issue 20), None when none given.
    flow: FlowOptions | None = None

    def check(self) -> tuple[float, float, list[Any]]:
        """Refuse a bad option, saying what was wrong; say when the job is due and how it runs.

        Returns:
            ``(delay, run_at, job_options)``: when the job is due as :func:`timing` says
            (``run_at`` being a cron job's first run), and the JOB message's option fields
            (trimmed of defaults: ``[]`` for none).

        Raises:
            TypeError: an option of the wrong type.
            ValueError: a bad value (see ``Distributor.enqueue``).
        """
        # One unpack reads every field at the cost of one attribute read.
        (on_success, on_error, after, run_at, period, _, node, not_node, timeout, max_attempt, cron,
         tz, priority, unique_key, unique_for, tags, trace, on_progress, flow) = self  # fmt: skip
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
        if on_success is not None or on_error is not None or on_progress is not None:
            check_feedback(on_success, on_error, on_progress)
        if unique_key is not None:
            check_unique(unique_key, unique_for)
        job_options = []
        if (
            timeout is not None
            or max_attempt is not None
            or cron is not None
            or tz is not None
            or priority != 0
            or tags is not None
            or trace is not None
            or flow is not None
        ):
            job_options = check_job_options(self)
        if after is not None or run_at is not None:
            return (*timing(after, run_at), job_options)
        if cron is None:
            return 0.0, 0.0, job_options
        # The first run; the node that holds the job computes the next ones.
        return 0.0, cron_schedule(cron, tz or "UTC").next_after(time.time()), job_options


#: Every option at its default.
PLAIN = EnqueueOptions()
#: Every option but the feedback callables at its default: ``options[2:] == ROUTINE`` is the
#: enqueue's fast path, with nothing to check but the callables.
ROUTINE = PLAIN[2:]

#: An :class:`EnqueueOptions` from a tuple of every field in order: how ``Distributor.enqueue``
#: builds one, without the Python call of the generated ``__new__`` (the enqueue hot path).
options_from: Callable[[tuple[Any, ...]], EnqueueOptions] = functools.partial(
    tuple.__new__, EnqueueOptions
)


def check_feedback(on_success: Any, on_error: Any, on_progress: Any = None) -> None:
    """Refuse a feedback callable that is not callable.

    Raises:
        TypeError: ``on_success``, ``on_error`` or ``on_progress`` is not None and not callable.
    """
    if on_success is not None and not callable(on_success):
        raise TypeError("on_success= must be callable")
    if on_error is not None and not callable(on_error):
        raise TypeError("on_error= must be callable")
    if on_progress is not None and not callable(on_progress):
        raise TypeError("on_progress= must be callable")


def timing(after: Any, run_at: Any) -> tuple[float, float]:
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
        return _delay(after), 0.0
    if run_at is None:
        return 0.0, 0.0
    return 0.0, _instant(run_at)


def _delay(after: Any) -> float:
    if isinstance(after, bool) or not isinstance(after, int | float) or not math.isfinite(after):
        raise ValueError(f"after= must be a number of seconds, not {after!r}")
    if after < 0:
        raise ValueError(f"after= must be >= 0 seconds, not {after}")
    return float(after)


def _instant(run_at: Any) -> float:
    if isinstance(run_at, dt.datetime):
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise ValueError(
                "run_at= got a naive datetime, which is ambiguous across machines; pass an aware "
                "one such as datetime.now(timezone.utc) + timedelta(seconds=30), or epoch seconds"
            )
        return run_at.timestamp()
    if isinstance(run_at, bool) or not isinstance(run_at, int | float) or not math.isfinite(run_at):
        raise ValueError(f"run_at= must be an aware datetime or epoch seconds, not {run_at!r}")
    if run_at <= 0:
        raise ValueError(f"run_at= must be a positive epoch time, not {run_at!r}")
    return float(run_at)


def check_unique(unique_key: Any, unique_for: Any) -> float:
    """The window in seconds, after refusing a bad key or window.

    Raises:
        TypeError: a key that is not a non-empty string, or a window that is not a number.
        ValueError: a window that is not a finite number > 0, or a key without a window.
    """
    if type(unique_key) is not str or not unique_key or len(unique_key) > MAX_KEY_LEN:
        raise TypeError(
            f"unique_key= must be a non-empty string of at most {MAX_KEY_LEN} characters, "
            f"not {unique_key!r:.80}"
        )
    if unique_for is None:
        raise ValueError(
            f"unique_key={unique_key!r} needs unique_for=: the seconds during which a second "
            "enqueue with that key returns the first job"
        )
    if isinstance(unique_for, bool) or not isinstance(unique_for, int | float):
        raise TypeError(f"unique_for= must be a number of seconds, not {unique_for!r}")
    if not (math.isfinite(unique_for) and unique_for > 0):
        raise ValueError(f"unique_for= must be a finite number of seconds > 0, not {unique_for!r}")
    return float(unique_for)


def check_job_options(options: EnqueueOptions) -> list[Any]:
    """Refuse bad per-job options (issue 13) at enqueue, saying what was wrong.

    Only called when one of them differs from its default, so a plain enqueue pays nothing.
    ``options`` are all the enqueue's options (cron may not be combined with some).

    Returns:
        The JOB message's option fields, trimmed of defaults.

    Raises:
        TypeError: an option of the wrong type.
        ValueError: ``timeout`` <= 0, ``max_attempt`` < 1, ``priority`` out of range, a bad
            cron expression or unknown time zone, ``tz`` without ``cron``, ``cron`` together
            with ``after``/``run_at``/``period``, or bad ``tags``.
    """
    timeout, max_attempt, cron, tz, priority = options[8:13]
    tags, trace = options.tags, options.trace
    if timeout is not None:
        _check_timeout(timeout)
        timeout = float(timeout)
    if max_attempt is not None:
        _check_max_attempt(max_attempt)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority= must be a whole number, not {priority!r}")
    if not P.MIN_PRIORITY <= priority <= P.MAX_PRIORITY:
        raise ValueError(
            f"priority= must be between {P.MIN_PRIORITY} and {P.MAX_PRIORITY} (higher runs "
            f"first), not {priority!r}"
        )
    if cron is not None or tz is not None:
        _check_cron(options)
    if tags is not None:
        tags = check_tags(tags)
    flat = None if trace is None else flat_trace(trace)
    limits = None if options.flow is None else check_flow(options.flow)
    return P.job_options_wire(timeout, max_attempt, cron, tz, priority, tags, flat, limits)


def check_flow(flow: FlowOptions) -> list[Any] | None:
    """The JOB message's ``limits`` for the flow-control keywords (issue 20).

    Raises:
        TypeError: an unknown keyword.
        ConfigError: a bad limit or key (see :func:`reactor.jobs.limits.limits_wire`).
    """
    given: dict[str, Any] = dict(flow)
    unknown = set(given) - set(FlowOptions.__annotations__)
    if unknown:
        raise TypeError(f"enqueue() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    return limits_wire(
        given.get("concurrency_key"),
        given.get("concurrency_limit"),
        given.get("rate_key"),
        given.get("rate_limit"),
        given.get("fair_key"),
    )


def flat_trace(trace: Any) -> list[str]:
    """A trace carrier (a dict of strings) flattened to the wire's ``[key, value, ...]``.

    Raises:
        TypeError: not a small dict of strings.
    """
    if not P.is_carrier(trace):
        raise TypeError(
            f"trace= must be a small dict of strings (a W3C carrier), not {trace!r:.80}"
        )
    return [x for pair in trace.items() for x in pair]


def check_tags(tags: Any) -> list[str] | None:
    """A job's tags as the wire carries them (None for an empty list), after refusing bad ones.

    Raises:
        TypeError: ``tags`` is a single string or not a list/tuple of strings.
        ValueError: more than ``MAX_TAGS`` tags, or an empty, overlong or unprintable tag.
    """
    if isinstance(tags, str) or not isinstance(tags, list | tuple):
        raise TypeError(
            f"tags= must be a list of strings such as ['billing', 'eu'], not {tags!r:.80}"
        )
    if len(tags) > P.MAX_TAGS:
        raise ValueError(f"tags= takes at most {P.MAX_TAGS} tags, not {len(tags)}")
    for tag in tags:
        if type(tag) is not str:
            raise TypeError(f"tags= must hold strings only, not {tag!r:.80}")
        if not 0 < len(tag) <= P.MAX_TAG_LEN or not tag.isprintable():
            raise ValueError(
                f"each tag must be 1 to {P.MAX_TAG_LEN} printable characters, not {tag!r:.80}"
            )
    return list(tags) or None


def _check_timeout(timeout: Any) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout= must be a number of seconds, not {timeout!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout= must be a finite number of seconds > 0, not {timeout!r}")


def _check_max_attempt(max_attempt: Any) -> None:
    if isinstance(max_attempt, bool) or not isinstance(max_attempt, int):
        raise TypeError(f"max_attempt= must be a whole number, not {max_attempt!r}")
    if not 1 <= max_attempt < 2**31:
        raise ValueError(f"max_attempt= must be between 1 and 2**31 - 1, not {max_attempt!r}")


def _check_cron(options: EnqueueOptions) -> None:
    cron, tz = options.cron, options.tz
    if cron is None:
        if tz is not None:
            raise ValueError("tz= is the time zone of a cron= schedule; give cron= with it")
        return
    given = (("after", options.after), ("run_at", options.run_at), ("period", options.period))
    clash = [n for n, v in given if v is not None]
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
