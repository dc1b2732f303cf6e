"""The wire's vocabulary: message kinds, the typed messages (NamedTuples) and the envelope limits.

Each message travels as an array whose first item is its kind and whose other items are its
NamedTuple's fields in order; wire/layout.py names where JOB and FEEDBACK fields sit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

PROTOCOL_VERSION = 2
MAX_FRAME_MESSAGES = 65_536
MAX_NAME_LEN = 256
MAX_ID_LEN = 128
MAX_TEXT_LEN = 64 * 1024
#: Wire bytes per array or map a frame may hold, at least (a FeedbackAck pair can be 3 bytes).
FRAME_BYTES_PER_CONTAINER = 2

# Message kinds. Node -> distributor: HELLO, STORED, REJECTED, PARKED, HANDBACK, FEEDBACK,
# HEARTBEAT, SYNC, BYE, PROGRESS. Distributor -> node: WELCOME, JOB, CANCEL, REVOKE, FEEDBACK_ACK,
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
PROGRESS = 19

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
    its connection since handed over) is ignored. ``limits_store``: the distributor's
    ``limits_store`` URL ("" none), which a node without one of its own adopts (issue 20)."""

    version: int
    distributor: str
    session: str
    heartbeat_interval: float
    echo: float
    node_session: str
    limits_store: str = ""


class Job(NamedTuple):
    """One assignment of a job to a node.

    ``delay`` is seconds after receipt (a duration, measured on the node's monotonic clock);
    ``run_at`` is a wall-clock instant (epoch seconds, 0: none); ``attempt`` counts the attempts
    already made elsewhere, so a reassigned retrying job keeps its count.

    The last seven fields are per-job options (issue 13), sent only when one differs from its
    default (the wire list is cut after the last non-default one, see ``layout.job_wire``), so
    a plain job costs nothing more: ``timeout`` seconds an attempt may take (None: no limit),
    ``max_attempt`` overriding the node's setting, a ``cron`` expression read in time zone ``tz``
    (the node computes each next run), ``priority`` (higher first wherever jobs wait), the
    user's ``tags`` (labels to find the job by) and ``trace``, the OpenTelemetry context of the
    enqueue (a W3C carrier flattened to ``[key, value, ...]``, as frames carry no maps; set only
    by instrumentation) that the node's spans continue. ``limits`` (issue 20) is None, or
    ``[concurrency_key, concurrency_limit, rate_key, rate_count, rate_per, fair_key]`` (see
    :data:`LIMITS_LEN`; absent parts None or 0).
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
    tags: list[str] | None = None
    trace: list[str] | None = None
    limits: list[Any] | None = None


#: A JOB's ``limits`` field: six items (see :class:`Job`); the longest key it may carry.
LIMITS_LEN = 6
MAX_LIMIT_KEY_LEN = 256

#: Priorities are 32-bit signed integers: any ordering structure and storage can hold them.
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1
#: Longest cron expression and time zone name a JOB may carry.
MAX_CRON_LEN = 256
MAX_TZ_LEN = 64
#: The most tags a job may carry, and the longest tag.
MAX_TAGS = 16
MAX_TAG_LEN = 64
#: The most entries of a trace carrier, and the longest key or value in it.
MAX_TRACE_ITEMS = 8
MAX_TRACE_LEN = 512


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


class Progress(NamedTuple):
    """How far a running attempt is: ``fraction`` in [0, 1] and an optional note. Not
    acknowledged and not re-sent (the node coalesces them; a lost one is replaced by the next)."""

    id: str
    asg: int
    fraction: float
    note: str | None


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
    | Progress
)
