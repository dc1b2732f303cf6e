"""The distributor's record of one job it holds, from enqueue to its final feedback.

Kept small (issue 19, memory per held job): the JOB message is built at each send, not kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reactor.wire.layout import JOB_LIMITS, JOB_OPTIONS
from reactor.wire.messages import JOB

if TYPE_CHECKING:
    from reactor.core.routing import NodeState

#: What a JOB message carries beyond a plain job's: ``(run_at, period, defer, options)``, the
#: options as :func:`~reactor.wire.layout.job_options_wire` cut them. None for a plain job.
Spec = tuple[float, float | None, bool, list[Any]]

_LIMITS_AT = JOB_LIMITS - JOB_OPTIONS  # the limits' place among the options


def make_spec(run_at: float, period: float | None, defer: bool, options: list[Any]) -> Spec | None:
    """A job's :data:`Spec`, or None for a plain job (no run_at, period, defer or option)."""
    if not run_at and period is None and not defer and not options:
        return None
    return run_at, period, defer, options


class JobState:
    """A job the distributor owns, from enqueue to its final feedback (DESIGN §3).

    The JOB message is not kept: :meth:`message` builds it from these fields at each send, so
    a copy still queued for a previous owner keeps its own assignment number, and a held job
    costs no wire list (issue 19, memory per held job). Fields most jobs never change (routing
    constraints, priority, cancel, attempt) are class defaults until set, then live in the
    instance dict.
    """

    __slots__ = (
        "__dict__",
        "acked",
        "args",
        "asg",
        "counted",
        "deferred",
        "due",
        "enqueued_at",
        "handle",
        "id",
        "last_seq",
        "name",
        "owner",
        "sent_at",
        "spec",
    )

    # Rare fields: these class defaults until set, then in the instance dict.
    node: str | None = None  # the node it should go to
    not_node: str | None = None  # the node it must not go to
    priority = 0  # higher first where jobs wait (also in the wire's options)
    periodic = False
    cancel = False  # the application asked to cancel it
    attempt = 0  # attempts made, as last reported

    def __init__(
        self,
        job_id: str,
        name: str,
        args: bytes,
        handle: Any,
        enqueued_at: float,
        spec: Spec | None = None,
        *,
        due: float = 0.0,
        deferred: bool = False,
    ) -> None:
        self.id = job_id
        self.name = name
        self.args = args  # packed; a periodic job's are replaced by each run's
        self.handle = handle
        self.enqueued_at = enqueued_at  # wall clock
        self.spec = spec
        self.due = due  # monotonic instant an after= job is due (0: none)
        self.deferred = deferred
        self.asg = 0  # the current assignment number (0: never assigned)
        self.owner: NodeState | None = None  # the node of the current assignment
        self.acked = False  # the owner has stored the current assignment
        self.counted = False  # it holds one of the owner's credits
        self.last_seq = 0  # the highest feedback sequence handled for this assignment
        self.sent_at = 0.0  # when the current assignment was last sent

    @classmethod
    def from_wire(
        cls,
        wire: list[Any],
        handle: Any,
        *,
        node: str | None = None,
        not_node: str | None = None,
        due: float = 0.0,
        deferred: bool = False,
        periodic: bool = False,
        priority: int = 0,
    ) -> JobState:
        """A job from its JOB wire list (an outbox entry's, a test's)."""
        _, job_id, asg, name, args, _, run_at, period, defer, attempt, enqueued_at, *options = wire
        spec = make_spec(run_at, period, defer, options)
        job = cls(
            str(job_id), str(name), args, handle, enqueued_at, spec, due=due, deferred=deferred
        )
        job.asg = int(asg)
        job.route(node, not_node, priority, periodic=periodic)
        if attempt:
            job.attempt = int(attempt)
        return job

    def route(
        self, node: str | None, not_node: str | None, priority: int, *, periodic: bool
    ) -> None:
        """Set the rare fields that differ from their defaults (the others cost nothing)."""
        if node is not None:
            self.node = node
        if not_node is not None:
            self.not_node = not_node
        if priority:
            self.priority = priority
        if periodic:
            self.periodic = True

    def message(self, now: float) -> list[Any]:
        """The JOB wire list of the current assignment, its delay counted from ``now``
        (monotonic). A new list each time: the endpoint may still hold an earlier one."""
        delay = max(0.0, self.due - now) if self.due else 0.0
        spec = self.spec
        if spec is None:
            return [JOB, self.id, self.asg, self.name, self.args, delay, 0.0, None, False,
                    self.attempt, self.enqueued_at]  # fmt: skip
        run_at, period, defer, options = spec
        wire = [JOB, self.id, self.asg, self.name, self.args, delay, run_at, period, defer,
                self.attempt, self.enqueued_at]  # fmt: skip
        if options:
            wire += options
        return wire

    @property
    def options(self) -> list[Any]:
        """The JOB message's options (timeout first), cut after the last one set."""
        spec = self.spec
        return [] if spec is None else spec[3]

    @property
    def limits(self) -> list[Any] | None:
        """The enqueue's flow-control options (the JOB message's list), or None."""
        options = self.options
        return options[_LIMITS_AT] if len(options) > _LIMITS_AT else None

    def handed_back(self, due: float, attempt: int) -> None:
        """A node handed the job back: it is due at ``due`` (monotonic; 0: now), which replaces
        any ``run_at``, after ``attempt`` attempts."""
        spec = self.spec
        if spec is not None and spec[0]:
            self.spec = (0.0, spec[1], spec[2], spec[3])
        self.due = due
        self.attempt = attempt

    def wall_due(self, now: float, mono: float) -> float:
        """When the job was due, on the wall clock: its ``run_at``, else its enqueue time plus
        its delay; ``now`` and ``mono`` are the wall and monotonic clocks read together."""
        spec = self.spec
        if spec is not None and spec[0]:
            return spec[0]
        if self.due:
            return now - (mono - self.due)
        return self.enqueued_at
