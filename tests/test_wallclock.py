"""Wall-clock jumps on the node core, on a fake clock (DESIGN §3 "Time"): ``run_at=`` follows
the wall clock, ``after=``, ``period=`` and retry delays do not."""

from __future__ import annotations

from reactor import Config
from reactor.core.node import NodeCore
from reactor.core.wallclock import WallWatch, at_wall
from reactor.jobs.record import ERROR, NEW, QUEUED, READY, WAITING, JobRecord
from tests.fake_port import RecordingPort

WALL = 1_800_000_000.0  # the wall clock at monotonic 1000.0
MONO = 1000.0


def _core() -> tuple[NodeCore, dict[str, JobRecord]]:
    core = NodeCore(
        RecordingPort(),
        name="n",
        session="s",
        links=[],
        config=Config(),
        capacity=4,
        job_names=["j"],
        durable=True,
        where="test",
    )
    jobs = {
        "at": JobRecord("at", "j", b"\x80", status=NEW, run_at=WALL + 100),  # run_at=
        "after": JobRecord("after", "j", b"\x80", status=NEW, run_at=WALL + 60, make_after=60),
        "period": JobRecord("period", "j", b"\x80", status=QUEUED, run_at=WALL + 10, period=10),
        "retry": JobRecord("retry", "j", b"\x80", status=ERROR, attempt=1, run_at=WALL + 30),
    }
    core.resume(list(jobs.values()), MONO, WALL)
    return core, jobs


def test_only_a_first_run_at_instant_is_anchored_to_the_wall_clock() -> None:
    jobs = _core()[1]
    assert [name for name, job in jobs.items() if at_wall(job)] == ["at"]


def test_a_forward_jump_fires_a_run_at_job_at_once_and_moves_nothing_else() -> None:
    core, jobs = _core()
    dues = {name: job.due for name, job in jobs.items()}
    now = MONO + 5
    assert core.wall_moved(now, WALL + 5 + 3600) == 1
    assert jobs["at"].due == now and jobs["at"].phase == WAITING
    assert {n: j.due for n, j in jobs.items() if n != "at"} == {
        n: d for n, d in dues.items() if n != "at"
    }
    core.fire_timers(now)
    assert list(core.ready) == [jobs["at"]] and jobs["at"].phase == READY


def test_a_backward_jump_delays_a_run_at_job_to_its_wall_instant() -> None:
    core, jobs = _core()
    now = MONO + 50
    assert core.wall_moved(now, WALL + 50 - 3600) == 1
    assert jobs["at"].due == now + 3650  # the wall clock reaches WALL + 100 in 3650 s
    core.fire_timers(MONO + 101)  # the old due time: nothing fires early
    assert jobs["at"].phase == WAITING and jobs["at"] not in core.ready
    assert core.wall_moved(MONO + 101, WALL + 101) == 1  # the clock is set right again
    core.fire_timers(MONO + 101)
    assert jobs["at"] in core.ready


def test_wall_watch_reports_jumps_not_drift() -> None:
    watch = WallWatch(jump=0.25)
    assert watch.moved(MONO, WALL) == 0.0
    assert watch.moved(MONO + 1, WALL + 1.1) == 0.0  # drift and slewing are followed
    assert watch.moved(MONO + 2, WALL + 2.2) == 0.0
    assert round(watch.moved(MONO + 3, WALL + 3.2 + 3600), 6) == 3600.0
    assert round(watch.moved(MONO + 4, WALL + 4.2), 6) == -3600.0
