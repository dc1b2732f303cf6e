"""Wall-clock jumps seen against the monotonic clock (DESIGN §3 "Time").

Timers run on the monotonic clock, so ``after=`` and ``period=`` ignore the wall clock. A
``run_at=`` instant is a wall-clock time turned into a monotonic due time when it arrives; if
the wall clock then jumps (an operator, a VM resumed, NTP stepping), that due time is wrong by
the jump. :class:`WallWatch` compares ``wall - monotonic`` at every tick and reports a change,
so the node re-arms its ``run_at=`` jobs: a jump delays one by at most a tick.
"""

from __future__ import annotations

from reactor.jobs.record import NEW, JobRecord

#: A change of ``wall - monotonic`` larger than this between two ticks is a jump (smaller ones
#: are drift and NTP slewing, followed without re-arming).
JUMP = 0.25


class WallWatch:
    """The offset between the wall and the monotonic clock, and its jumps."""

    def __init__(self, jump: float = JUMP) -> None:
        self.jump = jump
        self.offset: float | None = None

    def moved(self, now: float, wall: float) -> float:
        """The jump of the wall clock since the last call, in seconds (0.0: none)."""
        offset = wall - now
        previous, self.offset = self.offset, offset
        if previous is None or abs(offset - previous) <= self.jump:
            return 0.0
        return offset - previous


def at_wall(job: JobRecord) -> bool:
    """Whether a waiting job waits for a wall-clock instant (``run_at=``, before its first run)
    rather than for a duration (``after=``, a period, a retry delay)."""
    return job.status == NEW and job.make_after == 0 and job.run_at > 0
