"""The node's record of one job: what it is, where it stands, and what storage persists."""

from __future__ import annotations

from typing import Any, Final

NEW: Final = "new"
IN_PROGRESS: Final = "in progress"
QUEUED: Final = "queued"
COMPLETE: Final = "complete"
ERROR: Final = "error"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"

STATUSES: Final = (NEW, IN_PROGRESS, QUEUED, COMPLETE, ERROR, FAILED, CANCELLED)
#: Statuses a restarted node resumes (DESIGN §3).
UNFINISHED: Final = frozenset({NEW, IN_PROGRESS, QUEUED, ERROR})
#: Final statuses whose record a node may keep (``remove_*_jobs`` False); only these are pruned.
FINISHED: Final = (COMPLETE, FAILED, CANCELLED)
#: :data:`FINISHED` as a set, for the membership test on every storage write (half the cost).
IS_FINISHED: Final = frozenset(FINISHED)

#: The persisted fields, in a stable order (storage backends and the monitor use it).
FIELDS: Final = (
    "id",
    "name",
    "args",
    "status",
    "attempt",
    "run_at",
    "period",
    "make_after",
    "defer",
    "distributor",
    "node",
    "enqueued_at",
    "failed_at",
    "last_error",
    "seq",
    "asg",
    "dsession",
    "timeout",
    "max_attempt",
    "cron",
    "tz",
    "priority",
    "tags",
    "trace",
    "limits",
)
#: The per-job options among FIELDS: set at enqueue, never changed, and stored only when they
#: differ from these defaults (so a plain job's record is no bigger for them).
OPTION_DEFAULTS: Final = {
    "timeout": None,
    "max_attempt": None,
    "cron": None,
    "tz": None,
    "priority": 0,
    "tags": None,
    "trace": None,
    "limits": None,
}

# Where a record stands on its node (runtime only, never stored).
STORING: Final = 0  # being written; not acknowledged yet
WAITING: Final = 1  # on a timer (deferred, periodic, retrying)
READY: Final = 2  # due: in the ready queue
RUNNING: Final = 3  # an attempt is under way
HANDING: Final = 4  # handed back to its distributor, awaiting the acknowledgement
DONE: Final = 5  # finished; its final feedback awaits the acknowledgement


class JobRecord:
    """One job as a node holds it.

    ``args`` is the msgpack encoding of the job's argument dict: each attempt decodes a fresh
    copy, so a failed attempt cannot leak changes into the next one, and storage writes it as is.
    ``run_at`` is an absolute epoch time: the due time while the job waits, the start time while
    it runs (what storage keeps for restarts); ``due`` is the same instant on the node's monotonic
    clock, which timers use. ``seq`` counts the feedback messages sent for this job, so the
    distributor can drop duplicates; ``asg`` is the assignment number the job was sent with and
    ``dsession`` the session of the distributor that sent it (the fencing token of DESIGN §3).
    ``timeout``, ``max_attempt``, ``cron``/``tz`` and ``priority`` are the enqueue's per-job
    options (None: the job's ``@job`` option or the node's setting; a cron job repeats on its
    schedule the way a periodic one repeats after ``period``); ``tags`` are the user's labels
    and ``trace`` the enqueue's OpenTelemetry context (a W3C carrier), both None when not given;
    ``limits`` the enqueue's flow-control options (the JOB message's list, None: none).
    """

    __slots__ = (
        "__dict__",
        "args",
        "asg",
        "attempt",
        "distributor",
        "dsession",
        "due",
        "enqueued_at",
        "id",
        "make_after",
        "name",
        "node",
        "phase",
        "run_at",
        "seq",
        "status",
        "timer",
    )

    # Options and outcomes most jobs never use cost no slot: a record reads these class defaults
    # until one is set, which gives that record an instance dict (a slot costs 8 bytes on every
    # record; a read of an unset one here costs no Python call, unlike a property).
    period: float | None = None
    defer: bool = False
    timeout: float | None = None
    max_attempt: int | None = None
    cron: str | None = None
    tz: str | None = None
    priority: int = 0
    tags: list[str] | None = None
    trace: dict[str, str] | None = None
    failed_at: float | None = None
    last_error: str | None = None
    #: The application asked to cancel the running attempt.
    cancel_requested: bool = False
    #: A stale copy: its outcome is dropped.
    revoked: bool = False
    #: Its final outcome went to the node's result store.
    result_kept: bool = False
    #: The final feedback awaiting its acknowledgement (set once per job, as it ends).
    final_key: tuple[str, int, int] | None = None
    #: The enqueue's flow-control options (the JOB message's list; None: none; issue 20).
    limits: list[Any] | None = None
    #: The limits it holds while it runs (issue 20).
    permit: object | None = None
    #: A cancel reached its running attempt: it ends cancelled.
    interrupted: bool = False

    def __init__(
        self,
        id: str,
        name: str,
        args: bytes,
        *,
        status: str = NEW,
        attempt: int = 0,
        run_at: float = 0.0,
        period: float | None = None,
        make_after: float = 0.0,
        defer: bool = False,
        distributor: str = "",
        node: str = "",
        enqueued_at: float = 0.0,
        failed_at: float | None = None,
        last_error: str | None = None,
        seq: int = 0,
        asg: int = 0,
        dsession: str = "",
        timeout: float | None = None,
        max_attempt: int | None = None,
        cron: str | None = None,
        tz: str | None = None,
        priority: int = 0,
        tags: list[str] | None = None,
        trace: dict[str, str] | None = None,
        limits: list[Any] | None = None,
    ) -> None:
        self.id = id
        self.name = name
        self.args = args
        self.status = status
        self.attempt = attempt
        self.run_at = run_at
        self.make_after = make_after
        self.distributor = distributor
        self.node = node
        self.enqueued_at = enqueued_at
        self.seq = seq
        self.asg = asg
        self.dsession = dsession
        self.due = 0.0
        self.phase = STORING
        self.timer: object | None = None  # the scheduler's token while the job waits on a timer
        if period is not None or defer:
            self.period = period
            self.defer = defer
        if failed_at is not None or last_error is not None:
            self.failed_at = failed_at
            self.last_error = last_error
        if timeout is not None or max_attempt is not None or cron is not None or tz or priority:
            self.timeout = timeout
            self.max_attempt = max_attempt
            self.cron = cron
            self.tz = tz
            self.priority = priority
        if tags is not None or trace is not None:
            self.tags = tags
            self.trace = trace
        if limits is not None:
            self.limits = limits

    def __lt__(self, other: JobRecord) -> bool:
        """Enqueue order (then id): how the node's timer heap orders jobs due at one instant."""
        if self.enqueued_at != other.enqueued_at:
            return self.enqueued_at < other.enqueued_at
        return self.id < other.id

    def log_fields(self, node: str) -> dict[str, Any]:
        """The structured fields a log line about this job carries (``extra=``): ``job_id``,
        ``job_name``, ``node`` and ``attempt`` (see :mod:`reactor.ops.logs`)."""
        return {"job_id": self.id, "job_name": self.name, "node": node, "attempt": self.attempt}

    def to_dict(self) -> dict[str, Any]:
        """The persisted fields as a plain dict (``args`` still encoded)."""
        return {f: getattr(self, f) for f in FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """Rebuild a record from :meth:`to_dict` output."""
        fields = {f: data[f] for f in FIELDS if f in data and f not in ("id", "name", "args")}
        return cls(data["id"], data["name"], data["args"], **fields)

    def __repr__(self) -> str:
        return f"<JobRecord {self.id} {self.name!r} {self.status} attempt={self.attempt}>"
