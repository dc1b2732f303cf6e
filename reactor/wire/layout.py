"""Where JOB and FEEDBACK fields sit in their wire lists, and the functions that build those lists.

The hot paths keep JOB and FEEDBACK messages as plain lists (``[JOB, id, asg, ...]``) rather than
NamedTuples: a distributor rewrites a job's assignment number or delay in place, and a node keeps
each feedback list to resend it. Every module that indexes or builds such a list takes the
positions and the builders from here, so the layout is written down once (and a unit test
checks it against the NamedTuples' field order).
"""

from __future__ import annotations

from typing import Any

from reactor.wire.messages import FEEDBACK, JOB, Job

#: Positions in a JOB wire list (item 0 is the kind); the same order as :class:`Job`'s fields.
JOB_ID = 1
JOB_ASG = 2
JOB_NAME = 3
JOB_ARGS = 4
JOB_DELAY = 5
JOB_RUN_AT = 6
JOB_PERIOD = 7
JOB_DEFER = 8
JOB_ATTEMPT = 9
JOB_ENQUEUED_AT = 10
#: The first option (timeout); the options follow in :class:`Job`'s order.
JOB_OPTIONS = 11

#: Where the trace carrier and the limits sit (the seventh and eighth options).
JOB_TRACE = JOB_OPTIONS + 6
JOB_LIMITS = JOB_OPTIONS + 7

#: The JOB wire list's length without options (kind + 10 fields) and with all eight.
JOB_BASE_LEN = 11
JOB_FULL_LEN = 19
#: The options' defaults, in wire order (what :func:`job_wire` trims off the end).
JOB_OPTION_DEFAULTS: tuple[Any, ...] = (None, None, None, None, 0, None, None, None)

#: Positions in a FEEDBACK wire list; the same order as :class:`Feedback`'s fields.
FEEDBACK_ID = 1
FEEDBACK_ASG = 2
FEEDBACK_SEQ = 3
FEEDBACK_OUTCOME = 4
FEEDBACK_FINAL = 5
FEEDBACK_ARGS = 6
FEEDBACK_ERROR = 7
FEEDBACK_LEN = 8


def job_wire(job: Job) -> list[Any]:
    """The wire list of a job message, its options cut after the last non-default one."""
    wire = [JOB, *job]
    while (
        len(wire) > JOB_BASE_LEN and wire[-1] == JOB_OPTION_DEFAULTS[len(wire) - 1 - JOB_BASE_LEN]
    ):
        wire.pop()
    return wire


def new_job_wire(
    job_id: str,
    name: str,
    args: bytes,
    delay: float,
    run_at: float,
    period: float | None,
    defer: bool,
    enqueued_at: float,
    options: list[Any],
) -> list[Any]:
    """The JOB wire list of a job just enqueued (assignment 0, no attempt made yet).

    ``options`` comes from :func:`job_options_wire` ([] for a plain job).
    """
    wire = [JOB, job_id, 0, name, args, delay, run_at, period, defer, 0, enqueued_at]
    if options:
        wire += options
    return wire


def job_options_wire(
    timeout: float | None,
    max_attempt: int | None,
    cron: str | None,
    tz: str | None,
    priority: int,
    tags: list[str] | None = None,
    trace: list[str] | None = None,
    limits: list[Any] | None = None,
) -> list[Any]:
    """The options to append to a JOB wire list: [] when all are defaults (a plain job)."""
    options = [timeout, max_attempt, cron, tz, priority, tags, trace, limits]
    while options and options[-1] == JOB_OPTION_DEFAULTS[len(options) - 1]:
        options.pop()
    return options


def feedback_wire(
    job_id: str,
    asg: int,
    seq: int,
    outcome: int,
    final: bool,
    args: bytes,
    error: tuple[str, str, str] | None,
) -> list[Any]:
    """The FEEDBACK wire list of one run's outcome (the node keeps it to resend until acked)."""
    return [FEEDBACK, job_id, asg, seq, outcome, final, args, error]
