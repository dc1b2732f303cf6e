"""Issue 13: cron jobs held by a node — its core on a fake clock (every minute, the DST days in
Europe/Paris), and real node processes (a seconds schedule, cancel, a restart with Redis)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from reactor import Config, Distributor, JobCancelledError
from reactor.core.node import NodeCore
from reactor.jobs.cron import CronSchedule
from reactor.jobs.outcome import Attempt, Outcome
from reactor.jobs.record import JobRecord
from reactor.testing import async_wait_until
from reactor.wire import protocol as P
from tests.fake_port import RecordingPort

from .conftest import NodeFactory, Recorder, lines, wait_for_node

PARIS = ZoneInfo("Europe/Paris")


class FakeNode(RecordingPort):
    """Drives a NodeCore the way the node's driver does, on a fake clock.

    The monotonic clock starts at 0 and the wall clock at ``epoch``; both advance together
    unless a test moves the wall clock alone (a clock change on the machine).
    """

    def __init__(self, epoch: float, *, run_for: float = 0.25) -> None:
        self.now = 0.0
        self.wall_offset = epoch
        self.run_for = run_for
        super().__init__()
        self.starts: list[float] = []  # wall-clock start of each run
        self.core = NodeCore(
            self,
            name="fake",
            session="s",
            links=[],
            config=Config(),
            capacity=4,
            job_names=["tick"],
            durable=True,
            where="test",
        )
        self.core.started = True

    @property
    def wall(self) -> float:
        return self.wall_offset + self.now

    # driving
    def hold(self, expr: str, tz: str) -> JobRecord:
        first = CronSchedule(expr, tz).next_after(self.wall)
        job = JobRecord("c1", "tick", P.pack_args({}), run_at=first, cron=expr, tz=tz)
        self.core.resume([job], self.now, self.wall)
        return job

    def run_until(self, wall_end: float) -> None:
        """Fire timers and run due jobs (each taking ``run_for`` s) until the wall clock."""
        core = self.core
        while True:
            due = core.timers.earliest()
            if due is None or self.wall_offset + due > wall_end:
                return
            self.now = max(self.now, due)
            core.fire_timers(self.now, self.wall)
            while (job := core.next_ready(self.now)) is not None:
                core.begin(job, self.wall)
                self.starts.append(self.wall)
                self.now += self.run_for
                core.finished(job, Attempt(Outcome.DONE, {}, None), self.now, self.wall)


def _paris(*when: int) -> float:
    return dt.datetime(*when, tzinfo=PARIS).timestamp()


def _utc(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def test_every_minute_on_a_fake_clock() -> None:
    start = _paris(2026, 6, 1, 12, 0, 20)
    node = FakeNode(start)
    job = node.hold("* * * * *", "Europe/Paris")
    node.run_until(start + 10 * 60)
    assert [_utc(s) for s in node.starts] == [
        f"2026-06-01 10:{m:02d}:00" for m in range(1, 11)
    ]  # once a minute, on the minute, after each run ended
    assert job.status == "queued" and job.attempt == 0  # waiting for 12:11 Paris time
    assert _utc(job.run_at) == "2026-06-01 10:11:00"


def test_a_cron_run_that_fails_waits_for_the_next_instant() -> None:
    start = _paris(2026, 6, 1, 12, 0, 0)
    node = FakeNode(start)
    job = node.hold("*/5 * * * *", "UTC")
    node.now = node.core.timers.earliest() or 0.0
    node.core.fire_timers(node.now, node.wall)
    ready = node.core.next_ready(node.now)
    assert ready is job
    node.core.begin(job, node.wall)
    node.now += 1.0
    node.core.finished(job, Attempt(Outcome.FAILED, {}, RuntimeError("x")), node.now, node.wall)
    assert job.status == "error" and _utc(job.run_at) == "2026-06-01 10:10:00"


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        # 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day. It runs once,
        # at 03:00 CEST, the instant the gap ends.
        (29, ["2026-03-29 01:00:00", "2026-03-30 00:30:00", "2026-03-31 00:30:00"]),
        # 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice that day. It runs once,
        # at the first 02:30 (CEST), and not again at 02:30 CET.
        (25, ["2026-10-25 00:30:00", "2026-10-26 01:30:00", "2026-10-27 01:30:00"]),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_the_dst_days_in_paris_run_a_half_past_two_job_once(day: int, expected: list[str]) -> None:
    month = 3 if day == 29 else 10
    start = _paris(2026, month, day - 1, 12, 0)
    node = FakeNode(start)
    node.hold("30 2 * * *", "Europe/Paris")
    node.run_until(_paris(2026, month, day + 2, 12, 0))
    assert [_utc(s) for s in node.starts] == expected


def test_a_wall_clock_set_back_does_not_fire_a_cron_job_early() -> None:
    start = _paris(2026, 6, 1, 12, 0, 0)
    node = FakeNode(start)
    job = node.hold("0 13 * * *", "Europe/Paris")  # due in an hour
    node.wall_offset -= 600  # the machine's clock goes back ten minutes
    node.run_until(_paris(2026, 6, 1, 13, 30))
    assert [_utc(s) for s in node.starts] == ["2026-06-01 11:00:00"]
    assert _utc(job.run_at) == "2026-06-02 11:00:00"


def test_a_wall_clock_jumping_forward_fires_a_cron_job_at_its_instant() -> None:
    start = _paris(2026, 6, 1, 12, 0, 0)
    node = FakeNode(start)
    node.hold("0 13 * * *", "Europe/Paris")  # due in an hour
    node.now += 60.0
    node.wall_offset += 1800  # the machine's clock jumps half an hour ahead
    assert node.core.wall_moved(node.now, node.wall) == 1  # what the driver's tick does
    node.run_until(_paris(2026, 6, 1, 14, 0))
    assert [_utc(s) for s in node.starts] == ["2026-06-01 11:00:00"]  # 13:00 on the new clock


# -- on real nodes ---------------------------------------------------------------------------


async def test_a_seconds_schedule_runs_on_its_instants_until_cancelled(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    proc = start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1", proc=proc)
    path = tmp_path / "ticks.txt"
    ok = Recorder()
    handle = distributor.enqueue(
        "cron_tick", {"path": str(path)}, cron="* * * * * */1", tz="Asia/Kolkata", on_success=ok
    )
    await async_wait_until(lambda: len(lines(path)) >= 3, 10)
    handle.cancel()
    with pytest.raises(JobCancelledError):
        await asyncio.wait_for(handle, 10)
    ticks = [float(line.split()[1]) for line in lines(path)]
    for tick in ticks:
        assert 0.0 <= tick % 1.0 < 0.3, ticks  # on the whole second, never before it
    assert all(b - a > 0.7 for a, b in itertools.pairwise(ticks)), ticks
    count = len(ticks)
    await asyncio.sleep(1.5)  # past the next instant: a live timer would have fired
    assert len(lines(path)) == count
    assert len(ok.calls) >= 3
