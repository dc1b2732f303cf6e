"""The envelope schema: a check for every field of every message kind, and the general decoder.

Each message kind is registered with its NamedTuple and one check per field, in wire order.
:func:`check_message` runs them and says exactly which field is wrong; the codec's fast path
(wire/codec.py) repeats the same checks inline for the two kinds that come by the thousand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from reactor.errors import ProtocolError
from reactor.wire.layout import FEEDBACK_ERROR
from reactor.wire.messages import (
    BYE,
    CANCEL,
    FEEDBACK,
    FEEDBACK_ACK,
    HANDBACK,
    HANDBACK_ACK,
    HEARTBEAT,
    HELLO,
    JOB,
    LIMITS_LEN,
    MAX_CRON_LEN,
    MAX_ID_LEN,
    MAX_LIMIT_KEY_LEN,
    MAX_NAME_LEN,
    MAX_PRIORITY,
    MAX_TAG_LEN,
    MAX_TAGS,
    MAX_TEXT_LEN,
    MAX_TRACE_ITEMS,
    MAX_TRACE_LEN,
    MAX_TZ_LEN,
    MIN_PRIORITY,
    PARKED,
    PROGRESS,
    REFUSED,
    REJECTED,
    RESET,
    REVOKE,
    STORED,
    SYNC,
    SYNC_REPLY,
    WELCOME,
    Bye,
    Cancel,
    Feedback,
    FeedbackAck,
    HandBack,
    HandBackAck,
    Heartbeat,
    Hello,
    Job,
    Message,
    Parked,
    Progress,
    Refused,
    Rejected,
    Reset,
    Revoke,
    Stored,
    Sync,
    SyncReply,
    Welcome,
)


def _is_str(limit: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is str and len(v) <= limit


def _is_label(limit: int) -> Callable[[Any], bool]:
    """Ids and names end up in log lines: no control characters (no forged log lines)."""
    return lambda v: type(v) is str and len(v) <= limit and v.isprintable()


def is_num(v: Any) -> bool:
    # NaN and infinities are refused: a NaN due time would corrupt a node's timer heap.
    return type(v) is int or (type(v) is float and math.isfinite(v))


def is_delay(v: Any) -> bool:
    return is_num(v) and v >= 0


def _is_period(v: Any) -> bool:
    # A period of zero or less would rerun a job back to back forever.
    return v is None or (is_num(v) and v > 0)


def _is_bool(v: Any) -> bool:
    return type(v) is bool


def _is_count(v: Any) -> bool:
    return type(v) is int and 0 <= v < 2**31


def _is_id(v: Any) -> bool:
    return type(v) is str and len(v) <= MAX_ID_LEN and v.isprintable()


def _is_names(v: Any) -> bool:
    return type(v) is list and all(
        type(i) is str and len(i) <= MAX_NAME_LEN and i.isprintable() for i in v
    )


def _is_error(v: Any) -> bool:
    return v is None or (
        type(v) is list
        and len(v) == 3
        and all(type(s) is str and len(s) <= MAX_TEXT_LEN for s in v)
    )


def _is_tuples(*checks: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A list of fixed-length arrays whose items pass ``checks`` (for the rarer messages)."""
    n = len(checks)

    def check(v: Any) -> bool:
        if type(v) is not list:
            return False
        for item in v:
            if type(item) is not list or len(item) != n:
                return False
            for c, x in zip(checks, item, strict=True):
                if not c(x):
                    return False
        return True

    return check


def _is_refs(v: Any) -> bool:
    """A list of [job id, asg] (stored acks, cancels, revokes, syncs): checked inline, as these
    come in thousands per frame."""
    if type(v) is not list:
        return False
    for item in v:
        if type(item) is not list or len(item) != 2:
            return False
        job_id, asg = item
        if (
            type(job_id) is not str
            or len(job_id) > MAX_ID_LEN
            or not job_id.isprintable()
            or type(asg) is not int
            or not 0 <= asg < 2**31
        ):
            return False
    return True


def _is_acks(v: Any) -> bool:
    """A list of [job id, asg, seq] feedback acknowledgements, checked inline."""
    if type(v) is not list:
        return False
    for item in v:
        if type(item) is not list or len(item) != 3:
            return False
        job_id, asg, seq = item
        if (
            type(job_id) is not str
            or len(job_id) > MAX_ID_LEN
            or type(asg) is not int
            or type(seq) is not int
            or not 0 <= asg < 2**31
            or not 0 <= seq < 2**31
            or not job_id.isprintable()
        ):
            return False
    return True


_ID = _is_label(MAX_ID_LEN)
_NAME = _is_label(MAX_NAME_LEN)
_TEXT = _is_str(MAX_TEXT_LEN)
_REFS = _is_refs


def _is_opt_text(v: Any) -> bool:
    return v is None or (type(v) is str and len(v) <= MAX_TEXT_LEN)


def _is_args(v: Any) -> bool:
    return type(v) is bytes


def _is_timeout(v: Any) -> bool:
    return v is None or (is_num(v) and v > 0)


def _is_max_attempt(v: Any) -> bool:
    return v is None or (type(v) is int and 1 <= v < 2**31)


def _is_opt_label(limit: int) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        return v is None or (type(v) is str and 0 < len(v) <= limit and v.isprintable())

    return check


def _is_priority(v: Any) -> bool:
    return type(v) is int and MIN_PRIORITY <= v <= MAX_PRIORITY


def is_tags(v: Any) -> bool:
    """A job's tags: None, or a list of 1..MAX_TAGS printable strings of 1..MAX_TAG_LEN."""
    return v is None or (
        type(v) is list
        and 0 < len(v) <= MAX_TAGS
        and all(type(t) is str and 0 < len(t) <= MAX_TAG_LEN and t.isprintable() for t in v)
    )


def is_trace(v: Any) -> bool:
    """A trace carrier as the wire holds it (frames carry no maps): None, or a flat list
    ``[key, value, ...]`` of at most MAX_TRACE_ITEMS pairs of strings (W3C traceparent etc.)."""
    return v is None or (
        type(v) is list
        and len(v) % 2 == 0
        and 0 < len(v) <= 2 * MAX_TRACE_ITEMS
        and all(type(x) is str and len(x) <= MAX_TRACE_LEN for x in v)
    )


def _is_limit_key(v: Any) -> bool:
    return v is None or (type(v) is str and 0 < len(v) <= MAX_LIMIT_KEY_LEN and v.isprintable())


def is_limits(v: Any) -> bool:
    """A job's limits (issue 20): None, or ``[concurrency_key, concurrency_limit, rate_key,
    rate_count, rate_per, fair_key]`` with keys None or printable strings, counts >= 0 and a
    window of 0 (none), 1, 60 or 3600 seconds."""
    if v is None:
        return True
    if type(v) is not list or len(v) != LIMITS_LEN:
        return False
    ckey, climit, rkey, rcount, rper, fkey = v
    return (
        _is_limit_key(ckey)
        and _is_limit_key(rkey)
        and _is_limit_key(fkey)
        and type(climit) is int
        and 0 <= climit < 2**31
        and type(rcount) is int
        and 0 <= rcount < 2**31
        and rper in (0, 1, 60, 3600)
    )


def is_carrier(v: Any) -> bool:
    """A trace carrier as the application and storage hold it: a small dict of strings."""
    return (
        type(v) is dict
        and 0 < len(v) <= MAX_TRACE_ITEMS
        and all(
            type(k) is str and type(x) is str and len(k) <= MAX_TRACE_LEN >= len(x)
            for k, x in v.items()
        )
    )


_JOB_OPTION_CHECKS = (
    _is_timeout,
    _is_max_attempt,
    _is_opt_label(MAX_CRON_LEN),
    _is_opt_label(MAX_TZ_LEN),
    _is_priority,
    is_tags,
    is_trace,
    is_limits,
)


def job_options_ok(extra: list[Any]) -> bool:
    """Whether the options after a JOB's tenth field are valid (there may be fewer than seven)."""
    return all(check(value) for check, value in zip(_JOB_OPTION_CHECKS, extra, strict=False))


SCHEMA: dict[int, tuple[type[Any], tuple[Callable[[Any], bool], ...], tuple[str, ...]]] = {}


def _register(kind: int, cls: type[Any], *checks: Callable[[Any], bool]) -> None:
    SCHEMA[kind] = (cls, checks, cls._fields)


_register(
    HELLO, Hello, _is_count, _NAME, _ID, _is_count, _is_names, _is_bool, _is_bool, _TEXT, is_num
)
_register(WELCOME, Welcome, _is_count, _TEXT, _ID, is_num, is_num, _ID, _TEXT)
_register(
    JOB,
    Job,
    _ID,
    _is_count,
    _NAME,
    _is_args,
    is_delay,
    is_num,
    _is_period,
    _is_bool,
    _is_count,
    is_num,
    *_JOB_OPTION_CHECKS,
)
_register(STORED, Stored, _REFS)
_register(REJECTED, Rejected, _REFS, _TEXT)
_register(PARKED, Parked, _is_tuples(_is_id, _is_count, _is_count))
_register(HANDBACK, HandBack, _is_tuples(_is_id, _is_count, _is_count, is_delay), _TEXT)
_register(HANDBACK_ACK, HandBackAck, _REFS)
_register(CANCEL, Cancel, _REFS)
_register(REVOKE, Revoke, _REFS)
_register(FEEDBACK, Feedback, _ID, _is_count, _is_count, _is_count, _is_bool, _is_args, _is_error)
_register(FEEDBACK_ACK, FeedbackAck, _is_acks)
_register(HEARTBEAT, Heartbeat, _ID, _is_bool, is_num, _is_count)
_register(SYNC, Sync, _is_count, _REFS, _is_bool)
_register(SYNC_REPLY, SyncReply, _is_count, _REFS, _is_bool)
_register(RESET, Reset, _TEXT)
_register(REFUSED, Refused, _ID, _NAME, _TEXT)
_register(BYE, Bye, _ID)
_register(PROGRESS, Progress, _ID, _is_count, lambda v: is_num(v) and 0 <= v <= 1, _is_opt_text)

KIND_OF: dict[type[Any], int] = {cls: kind for kind, (cls, _, _) in SCHEMA.items()}


def check_message(item: Any) -> Message:
    """Check one decoded message against its schema and build its typed form.

    Raises:
        ProtocolError: naming the kind and the field that is wrong.
    """
    if type(item) is not list or not item or type(item[0]) is not int:
        raise ProtocolError("a message must be an array starting with its integer kind")
    spec = SCHEMA.get(item[0])
    if spec is None:
        raise ProtocolError(f"unknown message kind {item[0]}")
    cls, checks, fields = spec
    values = item[1:]
    required = len(checks) - len(cls._field_defaults)
    if not required <= len(values) <= len(checks):
        count = f"{len(checks)}" if required == len(checks) else f"{required} to {len(checks)}"
        raise ProtocolError(
            f"{cls.__name__} takes {count} fields ({', '.join(fields)}), got {len(values)}"
        )
    for check, value, field in zip(checks, values, fields, strict=False):
        if not check(value):
            raise ProtocolError(
                f"{cls.__name__}.{field} has an invalid value of type {type(value).__name__}"
            )
    error = FEEDBACK_ERROR - 1  # values has no kind in front
    if cls is Feedback and values[error] is not None:
        values[error] = tuple(values[error])
    message: Message = cls(*values)
    return message
