"""Cron schedules: every-minute firing, and the two DST days of 2026 in Europe/Paris."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgpack
import pytest

from reactor import ConfigError, ProtocolError
from reactor.jobs.cron import CronSchedule

PARIS = ZoneInfo("Europe/Paris")


def paris(*parts: int, fold: int = 0) -> float:
    return datetime(*parts, tzinfo=PARIS, fold=fold).timestamp()  # type: ignore[misc]


def fires(schedule: CronSchedule, start: float, end: float) -> list[float]:
    """Every fire instant in (start, end], stepping the schedule as a node would."""
    out: list[float] = []
    now = schedule.next_after(start)
    while now <= end:
        out.append(now)
        now = schedule.next_after(now)
    return out


def local(instants: list[float]) -> list[str]:
    return [datetime.fromtimestamp(t, PARIS).strftime("%d %H:%M %Z") for t in instants]


def test_every_minute_fires_on_each_minute_boundary() -> None:
    schedule = CronSchedule("* * * * *")
    start = datetime(2026, 6, 1, 12, 0, 30).timestamp()  # mid-minute, local time of the test box
    instants = fires(schedule, start, start + 3600)
    assert len(instants) == 60
    assert all(t % 60 == 0 for t in instants)
    assert [b - a for a, b in itertools.pairwise(instants)] == [60.0] * 59
    assert schedule.next_after(instants[0]) == instants[1]  # strictly after, never the same
    assert schedule.next_after(instants[0] - 0.001) == instants[0]


def test_every_minute_keeps_running_through_both_dst_changes() -> None:
    schedule = CronSchedule("* * * * *", tz="Europe/Paris")
    for day in (29, 25):
        month = 3 if day == 29 else 10
        start = paris(2026, month, day, 0, 0)
        instants = fires(schedule, start, start + 6 * 3600)
        assert [b - a for a, b in itertools.pairwise(instants)] == [60.0] * 359


def test_spring_forward_a_skipped_time_runs_once_when_the_gap_ends() -> None:
    # 2026-03-29: at 02:00 CET the clocks jump to 03:00 CEST; 02:30 does not exist that day.
    schedule = CronSchedule("30 2 * * *", tz="Europe/Paris")
    instants = fires(schedule, paris(2026, 3, 28, 12, 0), paris(2026, 3, 30, 12, 0))
    assert local(instants) == ["29 03:00 CEST", "30 02:30 CEST"]
    assert instants[0] == datetime(2026, 3, 29, 1, 0, tzinfo=ZoneInfo("UTC")).timestamp()


def test_fall_back_a_repeated_time_runs_once_at_its_first_occurrence() -> None:
    # 2026-10-25: at 03:00 CEST the clocks go back to 02:00 CET; 02:30 happens twice.
    schedule = CronSchedule("30 2 * * *", tz="Europe/Paris")
    instants = fires(schedule, paris(2026, 10, 24, 12, 0), paris(2026, 10, 26, 12, 0))
    assert local(instants) == ["25 02:30 CEST", "26 02:30 CET"]
    assert instants[0] == paris(2026, 10, 25, 2, 30, fold=0)
    # Asked from inside the repeated hour (after the first 02:30), it waits for the next day.
    assert schedule.next_after(paris(2026, 10, 25, 2, 45, fold=1)) == instants[1]


def test_hourly_schedules_follow_elapsed_time_across_dst() -> None:
    hourly = CronSchedule("@hourly", tz="Europe/Paris")
    spring = fires(hourly, paris(2026, 3, 29, 0, 0), paris(2026, 3, 29, 5, 0))
    assert local(spring) == ["29 01:00 CET", "29 03:00 CEST", "29 04:00 CEST", "29 05:00 CEST"]
    autumn = fires(hourly, paris(2026, 10, 25, 0, 30), paris(2026, 10, 25, 4, 0))
    assert local(autumn) == [
        "25 01:00 CEST",
        "25 02:00 CEST",
        "25 02:00 CET",
        "25 03:00 CET",
        "25 04:00 CET",
    ]
    assert [b - a for a, b in itertools.pairwise(autumn)] == [3600.0] * 4


def test_fixed_hours_in_the_repeated_hour_run_once_each() -> None:
    schedule = CronSchedule("*/30 1-3 * * *", tz="Europe/Paris")
    instants = fires(schedule, paris(2026, 10, 25, 0, 0), paris(2026, 10, 25, 12, 0))
    assert local(instants) == [
        "25 01:00 CEST",
        "25 01:30 CEST",
        "25 02:00 CEST",
        "25 02:30 CEST",
        "25 03:00 CET",
        "25 03:30 CET",
    ]


def test_time_zone_and_weekday_fields_are_honoured() -> None:
    assert CronSchedule("0 0 * * thu,fri").next_after(0) == 86400.0  # 1970-01-02, a Friday
    schedule = CronSchedule("0 9 * * 1-5", tz="America/New_York")
    saturday_noon = datetime(2026, 11, 28, 12, 0, tzinfo=ZoneInfo("America/New_York"))
    fire = datetime.fromtimestamp(
        schedule.next_after(saturday_noon.timestamp()), saturday_noon.tzinfo
    )
    assert fire == saturday_noon.replace(hour=9) + timedelta(days=2)  # Monday 09:00 EST


def test_a_rare_schedule_is_found_years_ahead() -> None:
    leap = CronSchedule("0 0 29 2 *")
    fire = datetime.fromtimestamp(leap.next_after(paris(2026, 1, 1, 0, 0)), ZoneInfo("UTC"))
    assert (fire.year, fire.month, fire.day) == (2028, 2, 29)


@pytest.mark.parametrize(
    ("expr", "tz", "message"),
    [
        ("", "UTC", "non-empty string"),
        ("61 * * * *", "UTC", "bad cron expression '61 \\* \\* \\* \\*'"),
        ("* * *", "UTC", "expected 5 fields"),
        ("0 0 30 2 *", "UTC", "never fires"),
        ("@fortnightly", "UTC", "bad cron expression"),
        ("R * * * *", "UTC", r"random \(R\) and hashed \(H\) fields are not supported"),
        ("H/15 * * * *", "UTC", "random"),
        ("* * * * *", "Europe/Pariss", "unknown time zone 'Europe/Pariss'"),
        ("* * * * *", "../etc/passwd", "unknown time zone"),
        ("* * * * *", "", "non-empty IANA name"),
    ],
)
def test_bad_expressions_and_zones_are_refused_clearly(expr: str, tz: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CronSchedule(expr, tz=tz)


def test_wire_form_round_trips_and_refuses_garbage() -> None:
    schedule = CronSchedule("30 2 * * *", tz="Europe/Paris")
    wire = msgpack.unpackb(msgpack.packb(schedule.to_wire()))
    assert wire == ["30 2 * * *", "Europe/Paris"]
    assert CronSchedule.from_wire(wire) == schedule
    for bad in (None, ["* * * * *"], ["nope", "UTC"], ["* * * * *", "Mars/Olympus"]):
        with pytest.raises(ProtocolError, match="cron schedule"):
            CronSchedule.from_wire(bad)
    with pytest.raises(ValueError, match="finite"):
        schedule.next_after(float("nan"))
