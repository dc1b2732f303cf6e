"""Cron schedules in a time zone: the next fire instant after a moment, correct across DST changes.

croniter finds the matching wall-clock times; this module maps them to instants itself, so that a
daylight-saving change never skips or doubles a fixed-time job (see :class:`CronSchedule`).
"""

from __future__ import annotations

import functools
import math
import reprlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from reactor.errors import ConfigError, ProtocolError

#: Cron's named schedules, expanded before use so the hour field can be read.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: Longest expression accepted (a cron line is short; this bounds what a message can carry).
MAX_EXPR_LEN = 256

#: How far a clock change is assumed to move the wall clock at most (real ones move 30 min to 2 h).
_SHIFT = timedelta(hours=3)
_SHIFT_S = _SHIFT.total_seconds()


def _check_expr(expr: Any) -> str:
    """The expression with aliases expanded, or a ConfigError saying what is wrong."""
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError(f"a cron expression must be a non-empty string, not {expr!r}")
    if len(expr) > MAX_EXPR_LEN:
        raise ConfigError(f"cron expression is over {MAX_EXPR_LEN} characters")
    expanded = ALIASES.get(expr.strip().lower(), expr.strip())
    fields = expanded.split()
    if len(fields) not in (5, 6):
        raise ConfigError(
            f"bad cron expression {expr!r}: expected 5 fields (minute hour day-of-month month "
            f"day-of-week), optionally a 6th for seconds, or one of {', '.join(ALIASES)}; "
            f"got {len(fields)} fields"
        )
    for part in (p for f in fields for p in f.split(",")):
        # croniter draws R afresh for each iterator and needs a hash id for H: a schedule that
        # moves between calls cannot be held by a node, so both are refused.
        if part[:1].upper() in ("H", "R"):
            raise ConfigError(
                f"bad cron expression {expr!r}: random (R) and hashed (H) fields are not "
                "supported; write the times out"
            )
    try:
        # Never-matching dates (February 30) only show when searching: search once from a
        # fixed date so that the check does not depend on the clock.
        croniter(expanded, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ConfigError(f"cron expression {expr!r} never fires") from None
    except (CroniterError, TypeError, ValueError) as exc:
        raise ConfigError(f"bad cron expression {expr!r}: {exc}") from None
    return expanded


def _zone(tz: Any) -> ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise ConfigError(f"a time zone must be a non-empty IANA name string, not {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"unknown time zone {tz!r}: use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression read in a time zone.

    Wall-clock times are matched in ``tz`` and each is mapped to one instant:

    * A time that does not exist because the clocks jump forward (02:30 in Europe/Paris on
      2026-03-29, when 02:00 CET becomes 03:00 CEST) fires when the gap ends: at 03:00 CEST, the
      instant of the change, once, even when several skipped times match (like Vixie cron, and
      like croniter itself). A job at 02:30 daily thus runs at 03:00 on that day.
    * A time that happens twice because the clocks go back (02:30 in Europe/Paris on
      2026-10-25) fires at its first occurrence (02:30 CEST) only, when the hour field names
      hours. When the hour field is ``*`` (hourly or more often) the schedule follows elapsed
      time and fires in both passes, so ``* * * * *`` never pauses for an hour.

    Args:
        expr: 5 fields (minute hour day-of-month month day-of-week), an optional 6th for
            seconds, or ``@hourly`` / ``@daily`` / ``@weekly`` / ``@monthly`` / ``@yearly``; any
            syntax croniter takes in those fields (ranges, steps, names, ``L``, ``#``).
        tz: an IANA time zone name.

    Raises:
        ConfigError: the expression is malformed or never fires, or the zone is unknown.
    """

    expr: str
    tz: str = "UTC"
    _expanded: str = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _twice_in_fold: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expanded = _check_expr(self.expr)
        object.__setattr__(self, "_expanded", expanded)
        object.__setattr__(self, "_zone", _zone(self.tz))
        object.__setattr__(self, "_twice_in_fold", expanded.split()[1] == "*")

    def next_after(self, epoch: float) -> float:
        """The first fire instant strictly after ``epoch``, in epoch seconds.

        Costs about 0.1 ms (a few croniter steps); a little more on the days clocks change.

        Raises:
            ValueError: ``epoch`` is not a finite number, or no fire instant is left before the
                year 9999 (croniter's ``CroniterBadDateError`` is a ValueError).
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int | float):
            raise ValueError(f"epoch must be a number of seconds, not {type(epoch).__name__}")
        if not math.isfinite(epoch):
            raise ValueError(f"epoch must be finite, not {epoch!r}")
        # Wall times just before the current one may still be ahead when the clocks are about
        # to go back: start the search that much earlier.
        drop = self._offset(epoch) - self._offset(epoch + _SHIFT_S)
        start = self._wall(epoch) - timedelta(seconds=max(0.0, drop))
        matches = croniter(self._expanded, start)
        best: float | None = None
        stop: datetime | None = None
        while True:
            wall: datetime = matches.get_next(datetime)
            if stop is not None and wall > stop:
                assert best is not None
                return best
            for instant in self._instants(wall):
                if instant > epoch and (best is None or instant < best):
                    best = instant
                    # A later wall time can be an earlier instant only across a fall-back.
                    back = self._offset(best - _SHIFT_S) - self._offset(best)
                    stop = self._wall(best) + timedelta(seconds=max(0.0, back))

    def _wall(self, epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, self._zone).replace(tzinfo=None)

    def _offset(self, epoch: float) -> float:
        offset = datetime.fromtimestamp(epoch, self._zone).utcoffset()
        return offset.total_seconds() if offset is not None else 0.0

    def _instants(self, wall: datetime) -> list[float]:
        """The instants at which the wall-clock time ``wall`` fires (see the class docstring)."""
        first = wall.replace(tzinfo=self._zone, fold=0).timestamp()
        second = wall.replace(tzinfo=self._zone, fold=1).timestamp()
        if first == second:
            return [first]
        if self._wall(first) == wall:  # it exists twice: the clocks went back
            return [first, second] if self._twice_in_fold else [first]
        # It does not exist. PEP 495 maps it with the offset before the change (``first``) and
        # after it (``second``): the change itself lies between.
        return [self._gap_end(second, first)]

    def _gap_end(self, low: float, high: float) -> float:
        """The instant in [low, high] when the zone's offset becomes the one at ``high``."""
        after = self._offset(high)
        lo, hi = math.floor(low), math.ceil(high)
        while lo < hi:  # transitions fall on whole seconds
            mid = (lo + hi) // 2
            if self._offset(mid) == after:
                hi = mid
            else:
                lo = mid + 1
        return float(hi)

    def to_wire(self) -> list[Any]:
        """A short msgpack-able list: ``[expr, tz]``."""
        return [self.expr, self.tz]

    @classmethod
    def from_wire(cls, value: Any) -> CronSchedule:
        """The schedule :meth:`to_wire` encoded (from a message or a stored record).

        Raises:
            ProtocolError: ``value`` is not ``[expr, tz]`` with a valid expression and zone.
        """
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise ProtocolError(f"a cron schedule must be [expr, tz], not {reprlib.repr(value)}")
        try:
            return cls(value[0], value[1])
        except ConfigError as exc:
            raise ProtocolError(f"invalid cron schedule: {exc}") from None


@functools.lru_cache(maxsize=1024)
def cron_schedule(expr: str, tz: str) -> CronSchedule:
    """The :class:`CronSchedule` for ``expr`` in ``tz``, built once per pair (parsing it costs
    more than finding a next run, and a node holds many jobs on few schedules).

    Raises:
        ConfigError: the expression is malformed or never fires, or the zone is unknown.
    """
    return CronSchedule(expr, tz)
