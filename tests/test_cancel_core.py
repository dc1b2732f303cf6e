"""The core's side of cancelling a running attempt (issue 20), on its own: the port is told to
interrupt, and the attempt's end decides nothing more: it ends cancelled, once, with no retry;
an attempt that ended before the cancel keeps its outcome."""

from __future__ import annotations

from reactor import Config
from reactor.core.node import NodeCore
from reactor.jobs import record as R
from reactor.jobs.outcome import Attempt, Outcome
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobEntry
from tests.fake_port import RecordingPort


def _body(args: dict[str, object]) -> None:
    pass


def _started(period: float | None = None) -> tuple[NodeCore, RecordingPort, JobRecord]:
    port = RecordingPort()
    core = NodeCore(
        port,
        name="n",
        session="s",
        links=[],
        config=Config(),
        capacity=1,
        job_names=["d"],
        durable=False,
        where="",
        kinds={"d": JobEntry("d", _body)}.get,
    )
    record = JobRecord("j1", "d", b"\x80", period=period)
    record.status = R.QUEUED
    core.resume([record], 0.0, 0.0)
    started = core.start_next(0.0, 1.0)
    assert started is not None and started[0] is record and record.phase == R.RUNNING
    return core, port, record


def test_a_cancel_of_a_running_attempt_interrupts_it_and_it_ends_cancelled() -> None:
    core, port, job = _started()
    core.intake.cancel("j1", job.asg, 0.1)
    assert port.interrupted == ["j1"] and job.interrupted
    core.intake.cancel("j1", job.asg, 0.1)  # a re-sent cancel: told once
    assert port.interrupted == ["j1"]
    core.finished(job, Attempt(Outcome.DONE, {}, None), 0.2, 1.2)  # it returned all the same
    assert job.status == R.CANCELLED
    assert (core.stats["cancelled"], core.stats["succeeded"]) == (1, 0)


def test_an_interrupted_attempt_that_fails_is_not_retried() -> None:
    core, _, job = _started()
    core.intake.cancel("j1", job.asg, 0.1)
    core.finished(job, Attempt(Outcome.FAILED, {}, RuntimeError("x")), 0.2, 1.2)
    assert job.status == R.CANCELLED and core.stats["attempts"] == 1
    assert (core.stats["cancelled"], core.stats["failed"]) == (1, 0)


def test_a_cancel_after_the_attempt_ended_changes_nothing() -> None:
    core, port, job = _started()
    core.finished(job, Attempt(Outcome.DONE, {}, None), 0.2, 1.2)
    core.intake.cancel("j1", job.asg, 0.3)
    assert port.interrupted == [] and job.status == R.COMPLETE
    assert (core.stats["cancelled"], core.stats["succeeded"]) == (0, 1)


def test_a_stale_cancel_does_not_reach_the_live_attempt() -> None:
    core, port, job = _started()
    core.intake.cancel("j1", job.asg + 1, 0.1)
    core.intake.cancel_running("j1", job.asg + 1)
    assert port.interrupted == [] and not job.interrupted


def test_a_thread_acting_for_a_held_loop_only_flags_the_running_attempt() -> None:
    core, port, job = _started()
    core.intake.cancel_running("j1", None)  # the monitor's listener: any assignment
    assert port.interrupted == ["j1"] and job.cancel_requested and job.interrupted
    assert port.sent == [] and core.stats["cancelled"] == 0  # no message, no outcome yet
    assert core.intake.cancel_here("j1", 0.1)  # the same cancel, on the loop: already done
    assert port.interrupted == ["j1"]
    core.finished(job, Attempt(Outcome.DONE, {}, None), 0.2, 1.2)
    assert job.status == R.CANCELLED


def test_an_interrupted_periodic_job_runs_no_more() -> None:
    core, _, job = _started(period=5.0)
    core.intake.cancel("j1", job.asg, 0.1)
    core.finished(job, Attempt(Outcome.DONE, {}, None), 0.2, 1.2)
    assert job.status == R.CANCELLED and not core.queue.timers
