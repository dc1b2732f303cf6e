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

from reactor.errors import MessageTooLargeError, ProtocolError

PROTOCOL_VERSION = 2
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
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


def _reject_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension type {code} is not allowed")


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
        "ext_hook": _reject_ext,
    }


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
        budget = _ContainerBudget(len(frame) // FRAME_BYTES_PER_CONTAINER + 1024, "frame")
        try:
            raw = msgpack.unpackb(
                frame, list_hook=budget.on_list, object_hook=_refuse_map, **self._limits
            )
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"undecodable frame: {_failure(exc)}") from None
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


# ---------------------------------------------------------------------------------------------
# Job arguments: a msgpack map carried as bin. They come from the network, so they are decoded
# under their own limits; pack_args refuses at enqueue whatever unpack_args would refuse later.

#: How deeply arrays and maps may nest in job args (the args dict itself is level 1).
ARGS_MAX_DEPTH = 32
#: Items in one array or map of job args.
ARGS_MAX_ITEMS = 262_144
#: Arrays and maps in one job's args, all levels together.
ARGS_MAX_CONTAINERS = 65_536

_ARGS_LIMITS: dict[str, Any] = {
    "raw": False,
    "use_list": True,
    "strict_map_key": True,  # keys are str (or bytes): no int/float/None keys
    "max_array_len": ARGS_MAX_ITEMS,
    "max_map_len": ARGS_MAX_ITEMS,
    "max_ext_len": 0,
    "ext_hook": _reject_ext,
}

_CONTAINERS = (dict, list, tuple, set, frozenset)


class _ContainerBudget:
    """msgpack hooks that count the arrays and maps a decode builds and stop it past a budget."""

    __slots__ = ("count", "limit", "what")

    def __init__(self, limit: int, what: str) -> None:
        self.count = 0
        self.limit = limit
        self.what = what

    def on_list(self, value: list[Any]) -> list[Any]:
        self.count += 1
        if self.count > self.limit:
            raise ProtocolError(f"over {self.limit} arrays and maps in {self.what}")
        return value

    def on_map(self, value: dict[Any, Any]) -> dict[Any, Any]:
        self.count += 1
        if self.count > self.limit:
            raise ProtocolError(f"over {self.limit} arrays and maps in {self.what}")
        return value


def _refuse_map(value: dict[Any, Any]) -> dict[Any, Any]:
    """No message carries a map: the first one (even empty) condemns the frame."""
    raise ProtocolError("a frame holds a map, which no message has")


def _failure(exc: Exception) -> str:
    """Why msgpack refused some bytes, without quoting any of them (they may be secret)."""
    if isinstance(exc, UnicodeDecodeError):
        return "a string is not valid UTF-8"
    if isinstance(exc, msgpack.ExtraData):
        return "extra bytes after the value"
    if isinstance(exc, msgpack.StackError):
        return "nested too deeply"
    return f"{type(exc).__name__}: {exc}"


def nesting_depth(value: Any, limit: int = ARGS_MAX_DEPTH) -> int:
    """How deeply arrays and maps nest in ``value`` (a scalar is 0, ``{}`` is 1).

    Walks with an explicit stack (no recursion) and stops as soon as the depth passes ``limit``,
    returning ``limit + 1``; so a cyclic structure ends too.
    """
    if not isinstance(value, _CONTAINERS):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return limit + 1
        for item in node.values() if isinstance(node, dict) else node:
            if isinstance(item, _CONTAINERS):
                stack.append((item, depth + 1))
    return deepest


def _path(path: tuple[Any, ...]) -> str:
    return "args" + "".join(f"[{p!r}]" for p in path)


def check_args_shape(args: dict[str, Any]) -> None:
    """Refuse args that :func:`unpack_args` would refuse on the other side.

    Raises:
        TypeError: a map key that is not str or bytes, or nesting deeper than ARGS_MAX_DEPTH.
        MessageTooLargeError: an array or map longer than ARGS_MAX_ITEMS, or more than
            ARGS_MAX_CONTAINERS arrays and maps in all.
    """
    # The common case, a flat dict of scalars under str keys, needs no walk.
    if len(args) <= ARGS_MAX_ITEMS:
        for key, value in args.items():
            if type(key) is not str or isinstance(value, _CONTAINERS):
                break
        else:
            return
    containers = 0
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(args, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > ARGS_MAX_DEPTH:
            raise TypeError(
                f"job {_path(path)} is nested {depth} levels deep, over the limit of "
                f"{ARGS_MAX_DEPTH} levels (counting the args dict)"
            )
        containers += 1
        if containers > ARGS_MAX_CONTAINERS:
            raise MessageTooLargeError(
                f"job args hold over {ARGS_MAX_CONTAINERS} lists and dicts; pass a reference "
                "(a key or a path) instead of the data"
            )
        if len(node) > ARGS_MAX_ITEMS:
            raise MessageTooLargeError(
                f"job {_path(path)} has {len(node)} items, over the limit of {ARGS_MAX_ITEMS}; "
                "pass a reference (a key or a path) instead of the data"
            )
        if isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str | bytes):
                    raise TypeError(
                        f"job {_path(path)} has the {type(key).__name__} key {key!r}: job args "
                        "use str keys at every level"
                    )
                if isinstance(item, _CONTAINERS):
                    stack.append((item, depth + 1, (*path, key)))
        else:
            for index, item in enumerate(node):
                if isinstance(item, _CONTAINERS):
                    stack.append((item, depth + 1, (*path, index)))


def pack_args(args: Any, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> bytes:
    """Encode a job's argument dict, failing in the caller with the offending key named.

    Raises:
        TypeError: ``args`` is not a dict, a value cannot be carried by msgpack, a key is not a
            string, or the args nest deeper than ``ARGS_MAX_DEPTH`` levels.
        MessageTooLargeError: the encoded arguments exceed ``max_size`` bytes, or hold more
            items than the args limits allow.
    """
    if type(args) is not dict:
        raise TypeError(f"job args must be a dict, not {type(args).__name__}")
    for key, value in args.items():  # the common case, flat args with str keys, needs no walk
        if type(key) is not str or isinstance(value, _CONTAINERS):
            check_args_shape(args)
            break
    else:
        if len(args) > ARGS_MAX_ITEMS:
            check_args_shape(args)
    try:
        data: bytes = msgpack.packb(args, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(_explain_unpackable(args, exc)) from None
    if len(data) > max_size:
        raise MessageTooLargeError(
            f"job args encode to {len(data)} bytes, over the {max_size}-byte message limit; "
            "pass a reference (a key or a path) instead of the data, or raise max_message_size"
        )
    return data


#: The integers msgpack can carry: int64 and uint64.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_CARRIED = "use str, int, float, bool, None, bytes, list or dict values"


def _explain_unpackable(args: dict[Any, Any], exc: Exception) -> str:
    """Why msgpack refused ``args``, naming the exact path of the first bad value.

    Only called after encoding failed, so the fast path pays nothing for it. The args already
    passed :func:`check_args_shape` when they hold containers, so the walk is bounded.
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(args, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            for key in value:
                if isinstance(key, str) and not _utf8(key):
                    return f"job {_path(path)} has a key that is not valid UTF-8: {key!r}"
            stack.extend((v, (*path, k)) for k, v in reversed(list(value.items())))
        elif isinstance(value, list | tuple):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(value))))
        else:
            problem = _leaf_problem(value)
            if problem:
                return f"job {_path(path)} {problem}"
    return f"job args cannot be encoded with msgpack: {exc}"


def _leaf_problem(value: Any) -> str:
    """What is wrong with one non-container value, or "" when msgpack takes it."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not _INT_MIN <= value <= _INT_MAX:
            return (
                "is an integer out of msgpack's 64-bit range (-2**63 to 2**64 - 1): "
                "send it as a str"
            )
        return ""
    try:
        msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(value, str):
            return f"is a str that is not valid UTF-8 ({exc})"
        name = type(value).__name__
        article = "an" if name[:1].lower() in "aeiou" else "a"
        hint = " (a set can travel as a list)" if isinstance(value, set | frozenset) else ""
        return f"is {article} {name}, which msgpack cannot carry{hint}: {_CARRIED}"
    return ""


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


#: Args this small cannot hold more arrays and maps than the budget (each takes a byte at least):
#: they decode without the counting hooks.
_SMALL_ARGS = ARGS_MAX_CONTAINERS
_SMALL_ARGS_LIMITS = {**_ARGS_LIMITS, "max_str_len": _SMALL_ARGS, "max_bin_len": _SMALL_ARGS}


def unpack_args(data: bytes) -> dict[str, Any]:
    """Decode a job's arguments under the args limits (they may come from a hostile peer).

    Raises:
        ProtocolError: the data is not a msgpack map with str keys, or breaks a limit: nesting
            past ``ARGS_MAX_DEPTH``, an array or map over ``ARGS_MAX_ITEMS`` items, more than
            ``ARGS_MAX_CONTAINERS`` arrays and maps, an extension type, or invalid UTF-8.
    """
    size = len(data)
    try:
        if size <= _SMALL_ARGS:
            args = msgpack.unpackb(data, **_SMALL_ARGS_LIMITS)
        else:
            budget = _ContainerBudget(ARGS_MAX_CONTAINERS, "job args")
            args = msgpack.unpackb(
                data,
                max_str_len=size,
                max_bin_len=size,
                list_hook=budget.on_list,
                object_hook=budget.on_map,
                **_ARGS_LIMITS,
            )
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"undecodable job args: {_failure(exc)}") from None
    if type(args) is not dict:
        raise ProtocolError(f"job args must decode to a map, not {type(args).__name__}")
    # Nesting past the limit takes more bytes than that: small args skip the walk.
    if size > ARGS_MAX_DEPTH and nesting_depth(args) > ARGS_MAX_DEPTH:
        raise ProtocolError(f"job args nest deeper than {ARGS_MAX_DEPTH} levels")
    return args


def _lenient(obj: Any) -> Any:
    """Stand-in for a value job code put in args that msgpack cannot carry."""
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return repr(obj)


def _sanitize(value: Any, depth: int, budget: list[int]) -> Any:
    """A copy of job output that :func:`unpack_args` accepts: str keys, bounded nesting."""
    if not isinstance(value, _CONTAINERS):
        return value
    budget[0] -= 1
    if depth > ARGS_MAX_DEPTH or budget[0] < 0:
        return f"<{type(value).__name__} nested or repeated past the args limits>"
    if isinstance(value, dict):
        return {
            k if isinstance(k, str | bytes) else str(k): _sanitize(v, depth + 1, budget)
            for k, v in list(value.items())[:ARGS_MAX_ITEMS]
        }
    return [_sanitize(v, depth + 1, budget) for v in list(value)[:ARGS_MAX_ITEMS]]


def pack_result_args(args: dict[str, Any]) -> bytes:
    """Encode a job's final args for feedback; values msgpack cannot carry become their repr.

    Job code may leave anything in args: keys that are not strings become ``str(key)``, and
    parts nested past the args limits become a short note, so the other side can decode them.
    """
    try:
        check_args_shape(args)
    except (TypeError, MessageTooLargeError):
        args = _sanitize(args, 1, [ARGS_MAX_CONTAINERS])
    return msgpack.packb(args, use_bin_type=True, default=_lenient)  # type: ignore[no-any-return]
