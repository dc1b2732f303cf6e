"""The wire protocol: message types, their envelope schema, and a bounded msgpack codec.

A frame is a msgpack array of messages; each message is an array whose first item is its kind.
Several messages share one frame when there is a backlog. Job arguments travel as msgpack ``bin``
inside the envelope, encoded once by the application and decoded (with their own limits) only
where the job runs, so the envelope can be checked cheaply with small limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgpack

from reactor.errors import ProtocolError

# The args codec's public names are re-exported: the wire layer is where callers meet them.
from reactor.wire.args import (
    ARGS_MAX_CONTAINERS as ARGS_MAX_CONTAINERS,
)
from reactor.wire.args import (
    ARGS_MAX_DEPTH as ARGS_MAX_DEPTH,
)
from reactor.wire.args import (
    ARGS_MAX_ITEMS as ARGS_MAX_ITEMS,
)
from reactor.wire.args import (
    DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE,
)
from reactor.wire.args import (
    ContainerBudget,
    describe_failure,
    reject_ext,
)
from reactor.wire.args import (
    check_args_shape as check_args_shape,
)
from reactor.wire.args import (
    nesting_depth as nesting_depth,
)
from reactor.wire.args import (
    pack_args as pack_args,
)
from reactor.wire.args import (
    pack_result_args as pack_result_args,
)
from reactor.wire.args import (
    unpack_args as unpack_args,
)

PROTOCOL_VERSION = 2
MAX_FRAME_MESSAGES = 65_536
MAX_NAME_LEN = 256
MAX_ID_LEN = 128
MAX_TEXT_LEN = 64 * 1024
#: Wire bytes per array or map a frame may hold, at least (a FeedbackAck pair can be 3 bytes).
FRAME_BYTES_PER_CONTAINER = 2

# Message kinds. Node -> distributor: HELLO, STORED, REJECTED, PARKED, HANDBACK, FEEDBACK,
# HEARTBEAT, SYNC, BYE. Distributor -> node: WELCOME, JOB, CANCEL, REVOKE, FEEDBACK_ACK,
# HANDBACK_ACK, SYNC_REPLY, HEARTBEAT, RESET, REFUSED.
HELLO = 1
WELCOME = 2
JOB = 3
STORED = 4
REJECTED = 5
PARKED = 6
CANCEL = 7
FEEDBACK = 8
FEEDBACK_ACK = 9
HEARTBEAT = 10
RESET = 11
REVOKE = 12
HANDBACK = 13
HANDBACK_ACK = 14
SYNC = 15
SYNC_REPLY = 16
REFUSED = 17
BYE = 18

# Feedback outcomes.
SUCCESS = 0
FAILURE = 1
CANCELLED = 2

#: (job id, assignment number): one assignment of a job to a node, the fencing token of DESIGN §3.
#: Sent as tuples or lists; decoded as 2-item lists (checked, not copied: acks come in thousands).
Ref = Sequence[Any]

#: Longest node name: a node's routing id is ``name/session`` and ZeroMQ caps routing ids at 255.
MAX_NODE_NAME_LEN = 200


def routing_id(node: str, session: str) -> bytes:
    """The ZeroMQ routing id of one node session: two sessions never share a connection slot,
    so a second node under a live name cannot silently take the first one's connection."""
    return f"{node}/{session}".encode()


def parse_routing_id(peer: bytes) -> tuple[str, str]:
    """``(node name, session)`` from a routing id; the session is "" when it has none.

    Raises:
        UnicodeDecodeError: the routing id is not UTF-8.
    """
    name, _, session = peer.decode().partition("/")
    return name, session


class Hello(NamedTuple):
    """A node introduces itself; ``sent_at`` is its monotonic clock, echoed back for its lease."""

    version: int
    node: str
    session: str
    capacity: int
    jobs: list[str]
    accepting: bool
    durable: bool
    where: str
    sent_at: float


class Welcome(NamedTuple):
    """The distributor accepts the hello of node session ``node_session``; ``echo`` is the
    hello's ``sent_at``. A welcome for another session (one that held the name a moment ago,
    its connection since handed over) is ignored."""

    version: int
    distributor: str
    session: str
    heartbeat_interval: float
    echo: float
    node_session: str


class Job(NamedTuple):
    """One assignment of a job to a node.

    ``delay`` is seconds after receipt (a duration, measured on the node's monotonic clock);
    ``run_at`` is a wall-clock instant (epoch seconds, 0: none); ``attempt`` counts the attempts
    already made elsewhere, so a reassigned retrying job keeps its count.

    The last five fields are per-job options (issue 13), sent only when one differs from its
    default (the wire list is cut after the last non-default one, see :func:`job_wire`), so a
    plain job costs nothing more: ``timeout`` seconds an attempt may take (None: no limit),
    ``max_attempt`` overriding the node's setting, a ``cron`` expression read in time zone ``tz``
    (the node computes each next run), and ``priority`` (higher first wherever jobs wait).
    """

    id: str
    asg: int
    name: str
    args: bytes
    delay: float
    run_at: float
    period: float | None
    defer: bool
    attempt: int
    enqueued_at: float
    timeout: float | None = None
    max_attempt: int | None = None
    cron: str | None = None
    tz: str | None = None
    priority: int = 0


#: The JOB wire list's length without options (kind + 10 fields) and with all five.
JOB_BASE_LEN = 11
JOB_FULL_LEN = 16
#: The options' defaults, in wire order (what :func:`job_wire` trims off the end).
JOB_OPTION_DEFAULTS: tuple[Any, ...] = (None, None, None, None, 0)
#: Priorities are 32-bit signed integers: any ordering structure and storage can hold them.
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1
#: Longest cron expression and time zone name a JOB may carry.
MAX_CRON_LEN = 256
MAX_TZ_LEN = 64


class Stored(NamedTuple):
    """The node has durably stored these assignments."""

    items: list[Ref]


class Rejected(NamedTuple):
    """The node did not store these assignments (storage down, stopping); route them elsewhere."""

    items: list[Ref]
    reason: str


class Parked(NamedTuple):
    """These jobs wait on a retry timer and no longer hold a run slot: (id, asg, attempts made)."""

    items: list[Sequence[Any]]


class HandBack(NamedTuple):
    """The node gives these jobs back unstarted: (id, asg, attempts made, seconds until due)."""

    items: list[Sequence[Any]]
    reason: str


class HandBackAck(NamedTuple):
    """The distributor has taken these jobs back; the node may forget them."""

    items: list[Ref]


class Cancel(NamedTuple):
    """The application cancels these jobs (final CANCELLED feedback unless they already ran)."""

    items: list[Ref]


class Revoke(NamedTuple):
    """These copies are stale (the job was reassigned or is finished): drop them silently."""

    items: list[Ref]


class Feedback(NamedTuple):
    """A run's outcome. ``final`` is False for the runs of a periodic job that goes on."""

    id: str
    asg: int
    seq: int
    outcome: int
    final: bool
    args: bytes
    error: tuple[str, str, str] | None


class FeedbackAck(NamedTuple):
    """The distributor has handled these (job id, asg, seq) feedbacks."""

    items: list[Sequence[Any]]


class Heartbeat(NamedTuple):
    """I am alive. From a node: whether it takes jobs, its clock (``stamp``) and its capacity
    (so what its hello said is refreshed every interval); from the distributor: the latest node
    clock it received (the node's lease runs from it) and capacity 0."""

    session: str
    accepting: bool
    stamp: float
    capacity: int


class Sync(NamedTuple):
    """A node lists the assignments it holds for this distributor session (in chunks)."""

    sync_id: int
    items: list[Ref]
    last: bool


class SyncReply(NamedTuple):
    """The stale assignments among a sync chunk; ``last`` ends the sync."""

    sync_id: int
    stale: list[Ref]
    last: bool


class Reset(NamedTuple):
    """The distributor does not know this node's session: send a hello."""

    reason: str


class Refused(NamedTuple):
    """The hello of node session ``session`` is refused (name taken, wrong version)."""

    session: str
    kind: str
    reason: str


class Bye(NamedTuple):
    """A node session stops for good; its name is free at once."""

    session: str


Message = (
    Hello
    | Welcome
    | Job
    | Stored
    | Rejected
    | Parked
    | HandBack
    | HandBackAck
    | Cancel
    | Revoke
    | Feedback
    | FeedbackAck
    | Heartbeat
    | Sync
    | SyncReply
    | Reset
    | Refused
    | Bye
)


def _is_str(limit: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is str and len(v) <= limit


def _is_label(limit: int) -> Callable[[Any], bool]:
    """Ids and names end up in log lines: no control characters (no forged log lines)."""
    return lambda v: type(v) is str and len(v) <= limit and v.isprintable()


def _is_num(v: Any) -> bool:
    # NaN and infinities are refused: a NaN due time would corrupt a node's timer heap.
    return type(v) is int or (type(v) is float and math.isfinite(v))


def _is_delay(v: Any) -> bool:
    return _is_num(v) and v >= 0


def _is_period(v: Any) -> bool:
    # A period of zero or less would rerun a job back to back forever.
    return v is None or (_is_num(v) and v > 0)


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


def _is_args(v: Any) -> bool:
    return type(v) is bytes


def _is_timeout(v: Any) -> bool:
    return v is None or (_is_num(v) and v > 0)


def _is_max_attempt(v: Any) -> bool:
    return v is None or (type(v) is int and 1 <= v < 2**31)


def _is_opt_label(limit: int) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        return v is None or (type(v) is str and 0 < len(v) <= limit and v.isprintable())

    return check


def _is_priority(v: Any) -> bool:
    return type(v) is int and MIN_PRIORITY <= v <= MAX_PRIORITY


_JOB_OPTION_CHECKS = (
    _is_timeout,
    _is_max_attempt,
    _is_opt_label(MAX_CRON_LEN),
    _is_opt_label(MAX_TZ_LEN),
    _is_priority,
)


def _job_options_ok(extra: list[Any]) -> bool:
    """Whether the options after a JOB's tenth field are valid (there may be fewer than five)."""
    return all(check(value) for check, value in zip(_JOB_OPTION_CHECKS, extra, strict=False))


_SCHEMA: dict[int, tuple[type[Any], tuple[Callable[[Any], bool], ...], tuple[str, ...]]] = {}


def _register(kind: int, cls: type[Any], *checks: Callable[[Any], bool]) -> None:
    _SCHEMA[kind] = (cls, checks, cls._fields)


_register(
    HELLO, Hello, _is_count, _NAME, _ID, _is_count, _is_names, _is_bool, _is_bool, _TEXT, _is_num
)
_register(WELCOME, Welcome, _is_count, _TEXT, _ID, _is_num, _is_num, _ID)
_register(
    JOB,
    Job,
    _ID,
    _is_count,
    _NAME,
    _is_args,
    _is_delay,
    _is_num,
    _is_period,
    _is_bool,
    _is_count,
    _is_num,
    *_JOB_OPTION_CHECKS,
)
_register(STORED, Stored, _REFS)
_register(REJECTED, Rejected, _REFS, _TEXT)
_register(PARKED, Parked, _is_tuples(_is_id, _is_count, _is_count))
_register(HANDBACK, HandBack, _is_tuples(_is_id, _is_count, _is_count, _is_delay), _TEXT)
_register(HANDBACK_ACK, HandBackAck, _REFS)
_register(CANCEL, Cancel, _REFS)
_register(REVOKE, Revoke, _REFS)
_register(FEEDBACK, Feedback, _ID, _is_count, _is_count, _is_count, _is_bool, _is_args, _is_error)
_register(FEEDBACK_ACK, FeedbackAck, _is_acks)
_register(HEARTBEAT, Heartbeat, _ID, _is_bool, _is_num, _is_count)
_register(SYNC, Sync, _is_count, _REFS, _is_bool)
_register(SYNC_REPLY, SyncReply, _is_count, _REFS, _is_bool)
_register(RESET, Reset, _TEXT)
_register(REFUSED, Refused, _ID, _NAME, _TEXT)
_register(BYE, Bye, _ID)

_KIND_OF: dict[type[Any], int] = {cls: kind for kind, (cls, _, _) in _SCHEMA.items()}
#: Messages whose first field is a list of fixed-length arrays, turned into tuples on decoding.
_TUPLE_ITEMS = frozenset(
    {Stored, Rejected, Parked, HandBack, HandBackAck, Cancel, Revoke, FeedbackAck, Sync}
)


def envelope_limits(max_message_size: int) -> dict[str, Any]:
    """The msgpack unpacker limits for a frame of at most ``max_message_size`` bytes."""
    return {
        "raw": False,
        "use_list": True,
        "strict_map_key": True,
        "max_str_len": MAX_TEXT_LEN,
        "max_bin_len": max_message_size,
        "max_array_len": MAX_FRAME_MESSAGES,
        "max_map_len": 0,
        "max_ext_len": 0,
        "ext_hook": reject_ext,
    }


def _refuse_map(value: dict[Any, Any]) -> dict[Any, Any]:
    """No message carries a map: the first one (even empty) condemns the frame."""
    raise ProtocolError("a frame holds a map, which no message has")


class Codec:
    """Encodes frames and decodes them under a size limit, checking every message's envelope."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._limits = envelope_limits(max_message_size)
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)

    def encode(self, messages: list[Message] | list[list[Any]]) -> bytes:
        """One frame holding ``messages`` (NamedTuples or ready wire lists)."""
        wire = [
            m if type(m) is list else job_wire(m) if type(m) is Job else [_KIND_OF[type(m)], *m]
            for m in messages
        ]
        return self._packer.pack(wire)  # type: ignore[no-any-return]

    def decode(self, frame: bytes) -> tuple[list[Message], list[ProtocolError]]:
        """The valid messages of a frame, and an error for each invalid one.

        Raises:
            ProtocolError: the frame as a whole is oversized or not a msgpack array of messages.
        """
        if len(frame) > self.max_message_size:
            raise ProtocolError(
                f"frame of {len(frame)} bytes exceeds the {self.max_message_size}-byte limit"
            )
        # An array costs ~64 bytes of Python memory however short it is on the wire. The budget
        # halves what a frame of empty arrays costs; it cannot be tighter, as a schema-valid ack
        # pair takes 3 bytes (FRAME_BYTES_PER_CONTAINER).
        budget = ContainerBudget(len(frame) // FRAME_BYTES_PER_CONTAINER + 1024, "frame")
        try:
            raw = msgpack.unpackb(
                frame, list_hook=budget.on_list, object_hook=_refuse_map, **self._limits
            )
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"undecodable frame: {describe_failure(exc)}") from None
        if type(raw) is not list:
            raise ProtocolError(f"a frame must be an array of messages, not {type(raw).__name__}")
        messages: list[Message] = []
        errors: list[ProtocolError] = []
        for item in raw:
            try:
                messages.append(decode_message(item))
            except ProtocolError as exc:
                errors.append(exc)
        return messages, errors


_COUNT_LIMIT = 2**31
_new_tuple = tuple.__new__


def _fast(item: list[Any]) -> Message | None:
    """The two messages that come by the thousand, checked inline (the same checks as their
    schema); None sends anything unusual down the general path, which explains what is wrong."""
    kind = item[0]
    if kind == FEEDBACK and len(item) == 8:
        _, job_id, asg, seq, outcome, final, args, error = item
        if (
            type(job_id) is str
            and type(asg) is int
            and type(seq) is int
            and type(outcome) is int
            and type(final) is bool
            and type(args) is bytes
            and error is None
            and len(job_id) <= MAX_ID_LEN
            and 0 <= asg < _COUNT_LIMIT
            and 0 <= seq < _COUNT_LIMIT
            and 0 <= outcome < _COUNT_LIMIT
            and job_id.isprintable()
        ):
            return Feedback(job_id, asg, seq, outcome, final, args, None)
    elif kind == JOB and JOB_BASE_LEN <= (n := len(item)) <= JOB_FULL_LEN:
        head = item if n == JOB_BASE_LEN else item[:JOB_BASE_LEN]  # options: see below
        _, job_id, asg, name, args, delay, run_at, period, defer, attempt, enqueued_at = head
        if (
            type(job_id) is str
            and type(asg) is int
            and type(name) is str
            and type(args) is bytes
            and period is None
            and type(defer) is bool
            and type(attempt) is int
            and len(job_id) <= MAX_ID_LEN
            and len(name) <= MAX_NAME_LEN
            and 0 <= asg < _COUNT_LIMIT
            and 0 <= attempt < _COUNT_LIMIT
            and _is_delay(delay)
            and _is_num(run_at)
            and _is_num(enqueued_at)
            and job_id.isprintable()
            and name.isprintable()
        ):
            if n == JOB_BASE_LEN:  # tuple.__new__: no Python frame to fill in the defaults
                return _new_tuple(
                    Job,
                    (job_id, asg, name, args, delay, run_at, None, defer, attempt, enqueued_at,
                     None, None, None, None, 0),
                )  # fmt: skip
            extra = item[JOB_BASE_LEN:]
            if _job_options_ok(extra):
                return Job(
                    job_id, asg, name, args, delay, run_at, None, defer, attempt, enqueued_at,
                    *extra,
                )  # fmt: skip
    return None


def decode_message(item: Any) -> Message:
    """Check one decoded message against its schema and build its typed form."""
    if type(item) is list and item:
        fast = _fast(item)
        if fast is not None:
            return fast
    if type(item) is not list or not item or type(item[0]) is not int:
        raise ProtocolError("a message must be an array starting with its integer kind")
    spec = _SCHEMA.get(item[0])
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
    if cls is Feedback and values[6] is not None:
        values[6] = tuple(values[6])
    return cls(*values)  # type: ignore[no-any-return]


def job_wire(job: Job) -> list[Any]:
    """The wire list of a job message, its options cut after the last non-default one."""
    wire = [JOB, *job]
    while (
        len(wire) > JOB_BASE_LEN and wire[-1] == JOB_OPTION_DEFAULTS[len(wire) - 1 - JOB_BASE_LEN]
    ):
        wire.pop()
    return wire


def job_options_wire(
    timeout: float | None, max_attempt: int | None, cron: str | None, tz: str | None, priority: int
) -> list[Any]:
    """The options to append to a JOB wire list: [] when all are defaults (a plain job)."""
    options = [timeout, max_attempt, cron, tz, priority]
    while options and options[-1] == JOB_OPTION_DEFAULTS[len(options) - 1]:
        options.pop()
    return options
